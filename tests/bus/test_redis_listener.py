"""Ungrouped Redis subscriptions progress independently, keep their order, and close cleanly."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from pepperpy.event import Event, EventBus, RetryPolicy
from tests.conftest import unique_name
from tests.helpers import delete_redis_keys, eventually

pytestmark = pytest.mark.redis


@pytest.fixture
async def namespace(redis_url: str) -> AsyncIterator[str]:
    name = unique_name("lis")
    yield name
    await delete_redis_keys(redis_url, f"{name}:*")


def make_bus(redis_url: str, namespace: str, **params: Any) -> EventBus:
    query = "&".join(f"{k}={v}" for k, v in {"namespace": namespace, **params}.items())
    return EventBus(transport=f"{redis_url}?{query}", retry_policy=RetryPolicy.NONE)


async def test_a_slow_handler_does_not_delay_another_subscription(
    redis_url: str, namespace: str
) -> None:
    bus = make_bus(redis_url, namespace)
    slow_started: list[float] = []
    fast_seen: list[float] = []

    @bus.subscribe("h.slow")
    async def slow(event: Event) -> None:
        slow_started.append(time.monotonic())
        await asyncio.sleep(2)

    @bus.subscribe("h.fast")
    async def fast(event: Event) -> None:
        fast_seen.append(time.monotonic())

    async with asyncio.timeout(15), bus:
        await bus.publish("h.slow", 1)
        await eventually(lambda: bool(slow_started), timeout=5)
        sent = time.monotonic()
        await bus.publish("h.fast", 2)
        await eventually(lambda: bool(fast_seen), timeout=5)
        assert fast_seen[0] - sent < 0.5, "the fast subscription waited for the slow one"


async def test_close_delivers_every_event_already_read(redis_url: str, namespace: str) -> None:
    bus = make_bus(redis_url, namespace)
    handled: list[int] = []

    @bus.subscribe("d.n")
    async def slow(event: Event) -> None:
        await asyncio.sleep(0.2)
        handled.append(event.data)

    count = 6
    async with asyncio.timeout(15):
        await bus.start()
        transport: Any = bus.transport
        client = transport._require_client()
        stream = transport.stream_for("d.n")
        # one transaction: the listener's blocked read returns all of them in one batch
        pipe = client.pipeline(transaction=True)
        for n in range(count):
            pipe.xadd(stream, {"topic": "d.n", "event": Event("d.n", n).to_json()})
        last = (await pipe.execute())[-1]
        await eventually(lambda: transport._listener._positions[stream] == last, timeout=5)
        await bus.close()  # the listener has read all of them: close delivers all of them
    assert handled == list(range(count))


async def test_each_subscription_keeps_per_key_order_while_others_are_slow(
    redis_url: str, namespace: str
) -> None:
    # a tiny batch_size makes the buffers of the lagging subscription overflow, so it
    # falls behind and catches up by itself, repeatedly, while the quick one keeps pace
    bus = make_bus(redis_url, namespace, batch_size=4, partitions=4)
    keys = [f"k{n}" for n in range(4)]
    per_key = 20
    got: dict[str, dict[str, list[int]]] = {name: {k: [] for k in keys} for name in "ab"}
    rng = random.Random(7)

    @bus.subscribe("s.slow")
    async def blocker(event: Event) -> None:
        await asyncio.sleep(2)

    @bus.subscribe("acct.*")
    async def lagging(event: Event) -> None:
        await asyncio.sleep(rng.uniform(0.02, 0.04))
        got["a"][event.data["k"]].append(event.data["n"])

    @bus.subscribe("acct.#")
    async def quick(event: Event) -> None:
        await asyncio.sleep(rng.uniform(0, 0.002))
        got["b"][event.data["k"]].append(event.data["n"])

    def complete(name: str) -> bool:
        return sum(len(v) for v in got[name].values()) >= len(keys) * per_key

    async def publish_key(key: str) -> None:
        for n in range(per_key):
            await bus.publish("acct.moved", {"k": key, "n": n}, key=key)

    async with asyncio.timeout(30), bus:
        started = time.monotonic()
        await bus.publish("s.slow", None)
        await asyncio.gather(*(publish_key(k) for k in keys))
        await eventually(lambda: complete("b"), timeout=10)
        assert time.monotonic() - started < 1.5, "a subscription waited for the slow one"
        await eventually(lambda: complete("a"), timeout=10)
    for name in "ab":
        assert got[name] == {k: list(range(per_key)) for k in keys}, name
