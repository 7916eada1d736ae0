"""A DeadLetterMiddleware callback or republish whose own ``await`` is cancelled (a future
someone else cancelled: an error tracker's client shutting down) has failed like any
other callback: it is logged, the callbacks after it and the republish still run, and
``process`` returns. Before, the CancelledError left ``process`` as a cancellation nobody
asked for and stopped a background attachment at its first bad event (audit 20). A
cancellation of the task running ``process`` still propagates at once."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest

from pepperpy.event import DeadLetter, DeadLetterMiddleware, Event, EventProcessor


async def cancelled_under_it() -> None:
    """Await a future that something else cancels."""
    future = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_soon(future.cancel)
    await future


class Bus:
    def __init__(self, *, cancelled: bool = False) -> None:
        self.cancelled = cancelled
        self.published: list[str] = []

    async def publish(self, topic: str, event: Event) -> None:
        if self.cancelled:
            await cancelled_under_it()
        self.published.append(topic)


def failing(dead_letters: DeadLetterMiddleware) -> EventProcessor:
    processor = EventProcessor().use(dead_letters)

    @processor.handle("order.placed")
    async def charge(event: Event) -> None:
        raise ValueError("card declined")

    return processor


async def test_a_cancelled_callback_is_logged_and_the_rest_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = Bus()
    dead_letters = DeadLetterMiddleware(bus=bus)
    later: list[str] = []

    @dead_letters.on_error
    async def report(letter: DeadLetter) -> None:
        await cancelled_under_it()

    @dead_letters.on_error
    def second(letter: DeadLetter) -> None:
        later.append(letter.event.type)

    with caplog.at_level(logging.ERROR, "pepperpy.event.processor"):
        await failing(dead_letters).process(Event("order.placed"))
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0
    assert later == ["order.placed"]
    assert bus.published == ["deadletter.order.placed"]
    assert len(dead_letters.dead_letters) == 1
    assert "dead-letter callback" in caplog.text
    assert "CancelledError" in caplog.text


async def test_a_cancelled_republish_is_logged_and_process_returns(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = Bus(cancelled=True)
    dead_letters = DeadLetterMiddleware(bus=bus)
    with caplog.at_level(logging.ERROR, "pepperpy.event.processor"):
        await failing(dead_letters).process(Event("order.placed"))
    assert bus.published == []
    assert len(dead_letters.dead_letters) == 1
    assert "could not publish the dead letter of order.placed" in caplog.text


async def test_a_background_attachment_goes_on_past_it() -> None:
    dead_letters = DeadLetterMiddleware()
    calls: list[int] = []

    @dead_letters.on_error
    async def report(letter: DeadLetter) -> None:
        calls.append(letter.event.data)
        if len(calls) == 1:
            await cancelled_under_it()

    processor = EventProcessor().use(dead_letters)
    done: list[int] = []

    @processor.handle("job")
    async def work(event: Event) -> None:
        if event.data in (1, 3):
            raise ValueError("bad job")
        done.append(event.data)

    async def source() -> AsyncIterator[Event]:
        for n in range(5):
            yield Event("job", n)

    attachment = processor.run_in_background(source())
    await asyncio.wait_for(attachment.wait(), 5)
    assert done == [0, 2, 4]
    assert calls == [1, 3]


async def test_a_cancellation_of_the_task_during_a_callback_still_propagates() -> None:
    bus = Bus()
    dead_letters = DeadLetterMiddleware(bus=bus)
    entered = asyncio.Event()
    later: list[str] = []

    @dead_letters.on_error
    async def report(letter: DeadLetter) -> None:
        entered.set()
        await asyncio.Event().wait()

    @dead_letters.on_error
    def second(letter: DeadLetter) -> None:
        later.append(letter.event.type)

    task = asyncio.ensure_future(failing(dead_letters).process(Event("order.placed")))
    await asyncio.wait_for(entered.wait(), 5)
    task.cancel()
    await asyncio.wait([task], timeout=5)
    assert task.cancelled()
    assert later == []
    assert bus.published == []


async def test_a_cancellation_of_the_task_during_the_republish_still_propagates() -> None:
    entered = asyncio.Event()

    class SlowBus:
        async def publish(self, topic: str, event: Event) -> None:
            entered.set()
            await asyncio.Event().wait()

    dead_letters = DeadLetterMiddleware(bus=SlowBus())
    task = asyncio.ensure_future(failing(dead_letters).process(Event("order.placed")))
    await asyncio.wait_for(entered.wait(), 5)
    task.cancel()
    await asyncio.wait([task], timeout=5)
    assert task.cancelled()
