"""A processor handler whose own ``await`` is cancelled (a future someone else cancelled)
has failed, as on the manager and the bus: the middleware see a failure, a store
attachment does not stop without a word, and the caller's task is not left cancelled. A
cancellation of the caller still propagates at once (audit 11)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from pepperpy.event import (
    DeadLetterMiddleware,
    Event,
    EventError,
    EventManager,
    EventProcessor,
    EventStore,
    RetryMiddleware,
    RetryPolicy,
    TimeoutMiddleware,
)

NextHandler = Callable[[Event], Awaitable[None]]


async def cancelled_under_it() -> None:
    """Await a future that something else cancels (a pool waiter, a closed client)."""
    future = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_soon(future.cancel)
    await future


def quick(attempts: int = 3) -> RetryPolicy:
    return RetryPolicy.fixed(max_attempts=attempts, base_delay=0)


async def test_process_raises_a_failure_not_a_cancellation() -> None:
    processor = EventProcessor()

    @processor.handle("job.run")
    async def fetch(event: Event) -> None:
        await cancelled_under_it()

    with pytest.raises(EventError) as caught:
        await processor.process(Event("job.run"))
    assert isinstance(caught.value.__cause__, asyncio.CancelledError)
    assert "fetch" in str(caught.value)
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0


async def test_retry_and_dead_letter_middleware_see_it_as_a_failure() -> None:
    dead_letters = DeadLetterMiddleware()
    processor = EventProcessor().use(dead_letters, RetryMiddleware(quick()))
    tries: list[int] = []

    @processor.handle("job.run")
    async def fetch(event: Event) -> None:
        tries.append(1)
        await cancelled_under_it()

    await processor.process(Event("job.run"))  # the dead letter stops it
    assert len(tries) == 3
    [letter] = dead_letters.dead_letters
    assert letter.handler is fetch
    assert letter.attempts == 3
    assert isinstance(letter.exception.__cause__, asyncio.CancelledError)


async def test_one_of_several_handlers_cancelled_fails_alone() -> None:
    processor = EventProcessor().use(RetryMiddleware(quick(2)))
    runs = {"charge": 0, "fetch": 0}

    @processor.handle("order.placed")
    async def charge(event: Event) -> None:
        runs["charge"] += 1

    @processor.handle("order.placed")
    async def fetch(event: Event) -> None:
        runs["fetch"] += 1
        await cancelled_under_it()

    with pytest.raises(EventError) as caught:
        await processor.process(Event("order.placed"))
    assert isinstance(caught.value.__cause__, asyncio.CancelledError)
    assert runs == {"charge": 1, "fetch": 2}  # retried; the one that succeeded ran once


async def test_a_cancellation_of_the_caller_still_propagates() -> None:
    processor = EventProcessor().use(DeadLetterMiddleware(), RetryMiddleware(quick()))
    entered = asyncio.Event()
    tries: list[int] = []

    @processor.handle("job.run")
    async def slow(event: Event) -> None:
        tries.append(1)
        entered.set()
        await asyncio.Event().wait()

    task = asyncio.ensure_future(processor.process(Event("job.run")))
    await asyncio.wait_for(entered.wait(), 5)
    task.cancel()
    await asyncio.wait([task], timeout=5)
    assert task.cancelled()
    assert tries == [1]  # not retried


async def test_a_timeout_is_still_a_timeout() -> None:
    processor = EventProcessor().use(TimeoutMiddleware(0.01))

    @processor.handle("job.run")
    async def slow(event: Event) -> None:
        await asyncio.Event().wait()

    with pytest.raises(TimeoutError):
        await processor.process(Event("job.run"))


async def test_a_store_attachment_with_dead_letters_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = EventStore()
    dead_letters = DeadLetterMiddleware()
    processor = EventProcessor().use(dead_letters)
    got: list[int] = []

    @processor.handle("job.*")
    async def handle(event: Event) -> None:
        got.append(event.data["n"])
        if event.data["n"] == 1:
            await cancelled_under_it()

    attachment = processor.attach(store, types="job.*")
    for n in range(4):
        await store.append("jobs", Event("job.run", {"n": n}))
    for _ in range(500):
        if len(got) >= 4 or not attachment.running:
            break
        await asyncio.sleep(0.01)
    assert got == [0, 1, 2, 3]
    assert attachment.running
    assert len(dead_letters.dead_letters) == 1
    assert "dead-lettered" in caplog.text
    await attachment.stop()
    await store.close()


async def test_a_store_attachment_stops_logged_and_wait_raises(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = EventStore()
    processor = EventProcessor()

    @processor.handle("job.*")
    async def handle(event: Event) -> None:
        await cancelled_under_it()

    attachment = processor.attach(store, types="job.*")
    await store.append("jobs", Event("job.run", {"n": 0}))
    with caplog.at_level(logging.ERROR, "pepperpy.event.processor"):
        with pytest.raises(EventError) as caught:
            await asyncio.wait_for(attachment.wait(), 5)
    assert isinstance(caught.value.__cause__, asyncio.CancelledError)
    assert not attachment.running
    assert "processor stopped" in caplog.text
    with pytest.raises(EventError):
        await attachment.stop()  # re-raises what stopped it
    await store.close()


async def test_run_in_background_stops_logged_and_wait_raises(
    caplog: pytest.LogCaptureFixture,
) -> None:
    processor = EventProcessor()
    got: list[int] = []

    @processor.handle("job.*")
    async def handle(event: Event) -> None:
        got.append(event.data["n"])
        if event.data["n"] == 1:
            await cancelled_under_it()

    async def source() -> AsyncIterator[Event]:
        for n in range(4):
            yield Event("job.run", {"n": n})

    with caplog.at_level(logging.ERROR, "pepperpy.event.processor"):
        attachment = processor.run_in_background(source())
        with pytest.raises(EventError):
            await asyncio.wait_for(attachment.wait(), 5)
    assert got == [0, 1]
    assert "processor stopped" in caplog.text


async def test_a_middleware_cancelled_under_a_store_attachment_is_a_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = EventStore()
    processor = EventProcessor()

    @processor.middleware
    async def flaky(event: Event, next_handler: NextHandler) -> None:
        await next_handler(event)
        await cancelled_under_it()

    processor.handle("job.*", lambda event: None)
    attachment = processor.attach(store, types="job.*", checkpoint="stray-cancel")
    await store.append("jobs", Event("job.run", {"n": 0}))
    with caplog.at_level(logging.ERROR, "pepperpy.event.processor"):
        with pytest.raises(EventError) as caught:
            await asyncio.wait_for(attachment.wait(), 5)
    assert isinstance(caught.value.__cause__, asyncio.CancelledError)
    assert "processor stopped" in caplog.text
    await store.close()


async def test_a_plain_store_attachment_with_a_cancelled_middleware_is_a_failure() -> None:
    store = EventStore()
    processor = EventProcessor()

    @processor.middleware
    async def flaky(event: Event, next_handler: NextHandler) -> None:
        await cancelled_under_it()

    processor.handle("job.*", lambda event: None)
    attachment = processor.attach(store, types="job.*")
    await store.append("jobs", Event("job.run", {"n": 0}))
    with pytest.raises(EventError):
        await asyncio.wait_for(attachment.wait(), 5)
    await store.close()


async def test_attached_to_a_manager_the_letter_names_the_handler() -> None:
    manager = EventManager(retry_policy=quick())
    processor = EventProcessor()
    tries: list[int] = []

    @processor.handle("job.run")
    async def fetch(event: Event) -> None:
        tries.append(1)
        await cancelled_under_it()

    processor.attach(manager, "job.*")
    await manager.emit("job.run", {})  # returns: a failure, dead-lettered
    assert len(tries) == 3  # an Exception: the manager's policy retries it
    [letter] = manager.dead_letters
    assert letter.handler is fetch
