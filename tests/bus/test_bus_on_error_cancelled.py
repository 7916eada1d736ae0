"""An EventBus on_error callback, or the dead letter's republish, whose own ``await`` is
cancelled (a future someone else cancelled) has failed like any other: it is logged, the
callbacks after it and the republish still run, and the delivery is not left cancelled.
A cancellation of the delivering task still propagates (audit 20, as for
DeadLetterMiddleware and EventManager.on_error)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from pepperpy.event import DeadLetter, Event, EventBus, RetryPolicy


async def cancelled_under_it() -> None:
    future = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_soon(future.cancel)
    await future


def failing_bus() -> EventBus:
    bus = EventBus(retry_policy=RetryPolicy.NONE)

    @bus.subscribe("jobs.*")
    def broken(event: Event) -> None:
        raise RuntimeError(f"job {event.data} failed")

    return bus


async def test_a_cancelled_callback_is_logged_and_the_rest_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = failing_bus()
    later: list[Any] = []
    republished: list[Any] = []

    @bus.on_error
    async def report(letter: DeadLetter) -> None:
        await cancelled_under_it()

    @bus.on_error
    def second(letter: DeadLetter) -> None:
        later.append(letter.event.data)

    @bus.subscribe("deadletter.jobs.*")
    def dead(event: Event) -> None:
        republished.append(event.data)

    with caplog.at_level(logging.ERROR):
        async with bus:
            task = asyncio.ensure_future(bus.publish("jobs.run", 1))
            await asyncio.wait([task], timeout=5)
            for _ in range(200):
                if later and republished:
                    break
                await asyncio.sleep(0.01)
    assert not task.cancelled()
    assert later == [1]
    assert republished == [1]
    assert "bus on_error callback" in caplog.text


async def test_a_cancelled_republish_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    bus = failing_bus()
    publish = bus.transport.publish

    async def flaky(event: Event, **options: Any) -> Any:
        if event.type.startswith("deadletter."):
            await cancelled_under_it()
        return await publish(event, **options)

    bus.transport.publish = flaky  # type: ignore[method-assign]
    later: list[Any] = []
    with caplog.at_level(logging.ERROR):
        async with bus:
            task = asyncio.ensure_future(bus.publish("jobs.run", 1))
            await asyncio.wait([task], timeout=5)
            task2 = asyncio.ensure_future(bus.publish("jobs.run", 2))
            await asyncio.wait([task2], timeout=5)
            later.extend(letter.event.data for letter in bus.dead_letters)
    assert not task.cancelled() and not task2.cancelled()
    assert later == [1, 2]
    assert "could not publish dead letter" in caplog.text
