"""A started bus used from an event loop running in another thread.

docs/bus.md: from a loop in another thread, ``close()`` runs on the bus's own loop and
any other use raises ClosedError. Refused means refused: nothing about the bus changes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from pepperpy.event import ClosedError, Event, EventBus
from tests.conftest import unique_name
from tests.helpers import LoopThread, delete_redis_keys


@pytest.fixture
def bus_loop() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.end()


async def wait_for_count(seen: list[Any], count: int) -> None:
    async with asyncio.timeout(10):
        while len(seen) < count:
            await asyncio.sleep(0.01)


def urls(request: pytest.FixtureRequest, kind: str, name: str) -> str:
    if kind == "memory":
        return "memory://"
    return f"{request.getfixturevalue('redis_url')}?namespace={name}"


@pytest.mark.parametrize("kind", ["memory", pytest.param("redis", marks=pytest.mark.redis)])
def test_unsubscribe_from_another_threads_loop_is_refused_and_changes_nothing(
    bus_loop: LoopThread, request: pytest.FixtureRequest, kind: str
) -> None:
    name = unique_name("foreign")
    url = urls(request, kind, name)
    bus = EventBus(transport=url)
    seen: list[Any] = []

    def handler(event: Event) -> None:
        seen.append(event.data)

    bus.subscribe("jobs.*", group="workers")(handler)
    try:
        bus_loop.run(bus.start())
        bus_loop.run(bus.publish("jobs.x", 1))
        bus_loop.run(wait_for_count(seen, 1))

        async def from_elsewhere() -> None:
            with pytest.raises(ClosedError, match="another thread"):
                await bus.unsubscribe("jobs.*", handler, group="workers")

        asyncio.run(from_elsewhere())
        bus_loop.run(bus.publish("jobs.x", 2))
        bus_loop.run(wait_for_count(seen, 2))  # still subscribed
        assert seen == [1, 2]
        assert bus_loop.run(bus.unsubscribe("jobs.*", handler, group="workers")) is True
    finally:
        bus_loop.run(bus.close())
        if kind == "redis":
            bus_loop.run(delete_redis_keys(request.getfixturevalue("redis_url"), f"{name}:*"))


@pytest.mark.parametrize("kind", ["memory", pytest.param("redis", marks=pytest.mark.redis)])
def test_subscribe_on_a_started_bus_from_another_threads_loop_is_refused(
    bus_loop: LoopThread, request: pytest.FixtureRequest, kind: str
) -> None:
    name = unique_name("foreign")
    bus = EventBus(transport=urls(request, kind, name))
    try:
        bus_loop.run(bus.start())

        async def from_elsewhere() -> None:
            with pytest.raises(ClosedError, match="another thread"):
                bus.subscribe("jobs.*")(lambda event: None)

        asyncio.run(from_elsewhere())
        seen: list[Any] = []
        bus.subscribe("jobs.*")(lambda event: seen.append(event.data))  # no loop: allowed
        bus_loop.run(bus.publish("jobs.x", 1))
        bus_loop.run(wait_for_count(seen, 1))
        assert seen == [1]  # only the subscription that was accepted
    finally:
        bus_loop.run(bus.close())
        if kind == "redis":
            bus_loop.run(delete_redis_keys(request.getfixturevalue("redis_url"), f"{name}:*"))
