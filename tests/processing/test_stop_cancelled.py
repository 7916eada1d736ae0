"""Cancelling the caller of ``Attachment.stop()`` cancels the caller: stop() must not
take that cancellation for the end of the consumer it stops and return normally."""

from __future__ import annotations

import asyncio

from pepperpy.event import Event, EventProcessor, EventStore


async def test_a_cancelled_stop_of_a_store_attachment_raises_cancelled() -> None:
    store = EventStore()
    processor = EventProcessor()
    entered, release = asyncio.Event(), asyncio.Event()

    @processor.handle("job.*")
    async def slow(event: Event) -> None:
        entered.set()
        await release.wait()

    await store.append("jobs", Event("job.run", 1))
    attachment = processor.attach(store)
    await asyncio.wait_for(entered.wait(), 5)
    stopping = asyncio.ensure_future(attachment.stop())
    for _ in range(5):
        await asyncio.sleep(0)
    assert not stopping.done()  # it waits for the event in progress
    stopping.cancel()
    done, _ = await asyncio.wait([stopping], timeout=5)
    assert done, "stop() did not end when cancelled"
    assert stopping.cancelled(), "stop() swallowed its caller's cancellation"
    await store.close()


async def test_stop_from_cleanup_code_of_a_cancelled_task_still_returns() -> None:
    # cancelling() is already 1 there: that alone is no reason to raise
    store = EventStore()
    processor = EventProcessor()
    seen: list[int] = []

    @processor.handle("job.*")
    async def record(event: Event) -> None:
        seen.append(event.data)

    await store.append("jobs", Event("job.run", 1))
    attachment = processor.attach(store)
    outcome: list[str] = []

    async def owner() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await attachment.stop()
            outcome.append("stopped")

    task = asyncio.ensure_future(owner())
    while not seen:
        await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.wait([task], timeout=5)
    assert outcome == ["stopped"] and task.cancelled()
    assert not attachment.running
    await store.close()


class _Endless:
    """An async iterable with no ``aclose``: stop() can only cancel its consumer."""

    def __init__(self) -> None:
        self.read = 0

    def __aiter__(self) -> _Endless:
        return self

    async def __anext__(self) -> Event:
        self.read += 1
        await asyncio.sleep(0)
        return Event("job.run", self.read)


async def test_stop_ends_a_consumer_whose_handler_swallows_the_cancellation() -> None:
    processor = EventProcessor()
    entered, swallowed = asyncio.Event(), asyncio.Event()

    @processor.handle("job.*")
    async def stubborn(event: Event) -> None:
        entered.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            swallowed.set()  # and returns, as a careless handler does

    source = _Endless()
    attachment = processor.run_in_background(source)
    await asyncio.wait_for(entered.wait(), 5)
    done, _ = await asyncio.wait([asyncio.ensure_future(attachment.stop())], timeout=5)
    assert swallowed.is_set()
    assert done, "stop() waited for a consumer that went on reading"
    assert source.read == 1  # nothing was read after the cancelled event
