"""memory://: a cancelled ``publish`` cancels the deliveries it started (docs/bus.md).

As a cancelled ``emit`` does its handlers: the handlers get the cancellation at their
current ``await`` and finish their cleanup before ``publish`` raises; nothing is retried
or dead-lettered. A publish made from a task of its own (or shielded) is not reached by
its caller's cancellation, as on a broker, and ``close()`` waits for its deliveries.
"""

from __future__ import annotations

import asyncio

import pytest

from pepperpy.event import Event, EventBus, RetryPolicy


@pytest.mark.parametrize("subscribers", [1, 2])
async def test_a_cancelled_publish_cancels_its_deliveries_and_waits_for_their_cleanup(
    subscribers: int,
) -> None:
    log: list[str] = []
    started = asyncio.Event()
    bus = EventBus(retry_policy=RetryPolicy.fixed(max_attempts=3, base_delay=0))

    async def handler(event: Event) -> None:
        started.set()
        try:
            await asyncio.sleep(30)
            log.append("finished")
        except asyncio.CancelledError:
            await asyncio.sleep(0.01)  # cleanup that suspends
            log.append("cleaned up")
            raise

    for _ in range(subscribers):
        bus.subscribe("order.placed", handler)
    async with bus:
        publish = asyncio.create_task(bus.publish("order.placed", {"id": 1}))
        await asyncio.wait_for(started.wait(), 10)
        publish.cancel()
        with pytest.raises(asyncio.CancelledError):
            await publish
        assert log == ["cleaned up"] * subscribers  # before publish raised
    assert not bus.dead_letters  # called off, not failed


async def test_a_publish_in_a_task_of_its_own_is_not_reached_by_its_callers_cancellation() -> None:
    log: list[str] = []
    started = asyncio.Event()
    bus = EventBus(retry_policy=RetryPolicy.NONE)

    @bus.subscribe("order.placed")
    async def handler(event: Event) -> None:
        started.set()
        await asyncio.sleep(0.05)
        log.append("finished")

    async def request() -> None:  # a web request that gives up after publishing
        await asyncio.shield(bus.publish("order.placed", {"id": 1}))

    async with bus:
        caller = asyncio.create_task(request())
        await asyncio.wait_for(started.wait(), 10)
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        assert log == []
    assert log == ["finished"]  # close() waited for the delivery
