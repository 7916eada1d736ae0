"""Each delivery runs in a Task of its own: a handler's timeout or cancellation stays its own.

Also the Redis specifics found next to it: consumer-group names that cannot collide, and
group workers whose blocking reads do not use up the shared connection pool.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import AsyncIterator
from typing import Any

import pytest

from pepperpy.event import Event, EventBus, RetryPolicy
from pepperpy.event.transports.redis import RedisTransport
from tests.conftest import unique_name
from tests.helpers import delete_redis_keys, eventually

VAR: contextvars.ContextVar[str] = contextvars.ContextVar("isolation_test_var", default="unset")


@pytest.fixture
async def redis_namespace(redis_url: str) -> AsyncIterator[str]:
    name = unique_name("iso")
    yield name
    await delete_redis_keys(redis_url, f"{name}:*")


def make_bus(kind: str, redis_url: str, namespace: str, **params: Any) -> EventBus:
    if kind == "memory":
        return EventBus(transport="memory://", retry_policy=RetryPolicy.NONE)
    query = "&".join(f"{k}={v}" for k, v in {"namespace": namespace, **params}.items())
    return EventBus(transport=f"{redis_url}?{query}", retry_policy=RetryPolicy.NONE)


KINDS = [
    pytest.param("memory", None, id="memory"),
    pytest.param("redis", None, marks=pytest.mark.redis, id="redis"),
    pytest.param("redis", "g", marks=pytest.mark.redis, id="redis-grouped"),
]


@pytest.fixture
async def url_and_namespace(request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, str]]:
    """A Redis URL and a fresh namespace (cleaned up), or placeholders for memory."""
    if "redis" not in request.node.callspec.id:
        yield "", ""
        return
    redis_url: str = request.getfixturevalue("redis_url")
    name = unique_name("iso")
    yield redis_url, name
    await delete_redis_keys(redis_url, f"{name}:*")


@pytest.mark.parametrize(("kind", "group"), KINDS)
async def test_a_timeout_inside_a_handler_cancels_only_that_handler(
    kind: str, group: str | None, url_and_namespace: tuple[str, str]
) -> None:
    bus = make_bus(kind, *url_and_namespace)
    outcomes: list[str] = []
    others: list[Any] = []

    @bus.subscribe("t.*", group=group)
    async def bounded(event: Event) -> None:
        try:
            async with asyncio.timeout(0.1):
                await asyncio.sleep(2)
            outcomes.append("slept")
        except TimeoutError:
            outcomes.append(f"timeout {event.data}")

    bus.subscribe("other.*")(lambda event: others.append(event.data))
    async with asyncio.timeout(15):
        async with bus:
            for n in (1, 2):
                await bus.publish("t.x", n)  # on memory: must not be cancelled
                await bus.publish("other.x", n)
            await eventually(lambda: len(outcomes) == 2 and others == [1, 2], timeout=5)
    assert outcomes == ["timeout 1", "timeout 2"]


@pytest.mark.parametrize(("kind", "group"), KINDS)
async def test_a_handler_raising_cancelled_error_fails_only_its_delivery(
    kind: str, group: str | None, url_and_namespace: tuple[str, str]
) -> None:
    bus = make_bus(kind, *url_and_namespace)
    seen: list[Any] = []
    others: list[Any] = []

    @bus.subscribe("h.*", group=group)
    async def victim(event: Event) -> None:
        seen.append(event.data)
        if event.data == 0 and seen.count(0) == 1:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            future.cancel()
            await future  # someone else cancelled what we wait for

    bus.subscribe("other.*")(lambda event: others.append(event.data))
    async with asyncio.timeout(15):
        async with bus:
            for n in range(4):
                await bus.publish("h.x", n)
                await bus.publish("other.x", n)
            await eventually(lambda: set(seen) == {0, 1, 2, 3} and len(others) == 4, timeout=8)
    assert others == [0, 1, 2, 3]


@pytest.mark.parametrize(("kind", "group"), KINDS)
async def test_context_variables_set_by_a_handler_stay_in_its_delivery(
    kind: str, group: str | None, url_and_namespace: tuple[str, str]
) -> None:
    bus = make_bus(kind, *url_and_namespace)
    seen: list[str] = []

    @bus.subscribe("c.*", group=group)
    def setter(event: Event) -> None:
        seen.append(VAR.get())
        VAR.set(f"set by {event.data}")

    async with asyncio.timeout(15):
        async with bus:
            for n in range(3):
                await bus.publish("c.x", n)
            await eventually(lambda: len(seen) == 3, timeout=5)
    assert seen == ["unset"] * 3
    assert VAR.get() == "unset"


@pytest.mark.redis
async def test_redis_group_names_of_distinct_pairs_never_collide(
    redis_url: str, redis_namespace: str
) -> None:
    one: list[Any] = []
    two: list[Any] = []
    first = make_bus("redis", redis_url, redis_namespace)
    second = make_bus("redis", redis_url, redis_namespace)
    first.subscribe("c.*", group="a:b")(lambda event: one.append(event.data))
    second.subscribe("b:c.*", group="a")(lambda event: two.append(event.data))
    async with asyncio.timeout(20):
        async with first, second:
            for n in range(10):
                await first.publish("c.x", n)
                await first.publish("b:c.x", n)
            await eventually(lambda: len(one) == 10 and len(two) == 10, timeout=8)
            await asyncio.sleep(0.2)
    assert sorted(one) == list(range(10))
    assert sorted(two) == list(range(10))


def test_plain_group_names_are_unchanged() -> None:
    from pepperpy.event.transports.redis._group import group_name

    assert group_name("workers", "orders.*") == "workers:orders.*"
    assert group_name("a:b", "c.*") != group_name("a", "b:c.*")


@pytest.mark.redis
async def test_redis_group_workers_do_not_pin_connections_of_the_shared_pool(
    redis_url: str, redis_namespace: str
) -> None:
    transport = RedisTransport(redis_url, namespace=redis_namespace, partitions=16)
    bus = EventBus(transport=transport, retry_policy=RetryPolicy.NONE)
    got: set[Any] = set()
    for i in range(8):  # 8 groups x 16 partitions: 128 blocking readers
        bus.subscribe(f"svc{i}.*", group="workers")(lambda event: got.add(event.data))
    async with asyncio.timeout(30):
        async with bus:
            await eventually(
                lambda: all(len(m._workers) == 16 for m in transport._members), timeout=10
            )
            pool: Any = transport._require_client().connection_pool
            assert len(pool._in_use_connections) + len(pool._available_connections) < 16
            for i in range(8):
                for k in range(16):
                    await bus.publish(f"svc{i}.x", i * 100 + k, key=f"k{k}")
            await eventually(lambda: len(got) == 128, timeout=10)
