"""``run_in_background`` (and ``run``) fed from an async generator, as a user writes one.

``stop()`` while the generator waited for its next event raised ``RuntimeError:
aclose(): asynchronous generator is already running`` and left the task reading; a
source that is no async iterable was taken and failed later, in the task, logged as a
store event's failure.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest

from pepperpy.event import (
    Attachment,
    Event,
    EventProcessor,
    EventStore,
    RetryMiddleware,
    RetryPolicy,
)

_WAIT = 5


def _processor(seen: list[str]) -> EventProcessor:
    processor = EventProcessor()
    processor.handle("job.*", lambda event: seen.append(event.type))
    return processor


async def test_stop_while_the_generator_waits_for_its_next_event() -> None:
    seen: list[str] = []
    more = asyncio.Event()  # never set: the source has nothing more for now
    closed = asyncio.Event()

    async def events() -> AsyncIterator[Event]:
        try:
            yield Event("job.first", {})
            await more.wait()
            yield Event("job.second", {})
        finally:
            closed.set()

    attachment = _processor(seen).run_in_background(events())
    while not seen:  # noqa: ASYNC110 - polling the list is the test
        await asyncio.sleep(0.01)
    await asyncio.wait_for(attachment.stop(), _WAIT)  # raised RuntimeError before
    assert not attachment.running
    assert closed.is_set()  # the generator's cleanup ran
    assert seen == ["job.first"]
    await asyncio.wait_for(attachment.wait(), _WAIT)  # ended by stop(): no error


async def test_stop_with_an_event_in_hand_still_lets_it_finish() -> None:
    seen: list[str] = []
    entered, release = asyncio.Event(), asyncio.Event()
    processor = EventProcessor()

    @processor.handle("job.*")
    async def slow(event: Event) -> None:
        entered.set()
        await release.wait()
        seen.append(event.type)

    async def events() -> AsyncIterator[Event]:
        yield Event("job.first", {})
        yield Event("job.second", {})

    attachment = processor.run_in_background(events())
    await asyncio.wait_for(entered.wait(), _WAIT)
    stopping = asyncio.ensure_future(attachment.stop())
    await asyncio.sleep(0)
    release.set()
    await asyncio.wait_for(stopping, _WAIT)
    assert seen == ["job.first"]  # finished, and nothing read after it


async def _nothing() -> AsyncIterator[Event]:
    for event in ():
        yield event


@pytest.mark.parametrize(
    ("source", "hint"),
    [
        ([Event("job.first", {})], "got list: wrap a list"),
        (None, "got NoneType$"),
        (_nothing, r"got function: call it, run_in_background\(_nothing\(\)\)"),
    ],
)
async def test_run_in_background_refuses_what_is_no_async_iterable(
    source: object, hint: str
) -> None:
    processor = _processor([])
    tasks = len(asyncio.all_tasks())
    with pytest.raises(TypeError, match=r"^run_in_background\(\) takes an async iterable.*" + hint):
        processor.run_in_background(source)  # type: ignore[arg-type]
    assert len(asyncio.all_tasks()) == tasks  # no task was started for it


async def test_run_refuses_what_is_no_async_iterable() -> None:
    with pytest.raises(TypeError, match=r"^run\(\) takes an async iterable.*got list"):
        await _processor([]).run([Event("job.first", {})])  # type: ignore[arg-type]


async def test_a_failing_background_run_is_logged_as_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    processor = EventProcessor()

    @processor.handle("job.*")
    def fails(event: Event) -> None:
        raise ValueError("boom")

    event = Event("job.first", {})

    async def events() -> AsyncIterator[Event]:
        yield event

    caplog.set_level(logging.ERROR, logger="pepperpy.event.processor")
    attachment = processor.run_in_background(events())
    with pytest.raises(ValueError, match="boom"):
        await asyncio.wait_for(attachment.wait(), _WAIT)
    messages = [record.getMessage() for record in caplog.records]
    assert messages == [
        f"processor stopped (background run): processing job.first ({event.id}) failed"
    ]


async def test_a_failing_source_is_logged_as_the_source(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def events() -> AsyncIterator[Event]:
        yield Event("job.first", {})
        raise ConnectionError("the queue went away")

    caplog.set_level(logging.ERROR, logger="pepperpy.event.processor")
    attachment = _processor([]).run_in_background(events())
    with pytest.raises(ConnectionError):
        await asyncio.wait_for(attachment.wait(), _WAIT)
    messages = [record.getMessage() for record in caplog.records]
    assert messages == [
        "processor stopped (background run): reading the next event from the source failed"
    ]


class _Endless:
    """A source without ``aclose()``: ``stop()`` can only cancel its reader."""

    def __aiter__(self) -> _Endless:
        return self

    async def __anext__(self) -> Event:
        await asyncio.Event().wait()
        raise StopAsyncIteration


async def _supervised(attachment: Attachment) -> str:
    await attachment.wait()
    return "ended"


async def test_wait_returns_when_stop_cancels_a_reader_without_aclose() -> None:
    attachment = _processor([]).run_in_background(_Endless())
    supervisor = asyncio.ensure_future(_supervised(attachment))
    await asyncio.sleep(0)  # the supervisor waits now
    await asyncio.wait_for(attachment.stop(), _WAIT)
    # it got a CancelledError nobody had sent it, and ended cancelled
    assert await asyncio.wait_for(supervisor, _WAIT) == "ended"


async def test_wait_returns_when_stop_cuts_a_retry_wait_of_a_store_attachment() -> None:
    processor = EventProcessor().use(RetryMiddleware(RetryPolicy.fixed(3, 3600)))
    failed = asyncio.Event()

    @processor.handle("job.*")
    def fails(event: Event) -> None:
        failed.set()
        raise ConnectionError("down")

    async with EventStore() as store:
        await store.append("job.1", Event("job.first", {}))
        attachment = processor.attach(store)
        await asyncio.wait_for(failed.wait(), _WAIT)  # now waiting an hour to retry
        supervisor = asyncio.ensure_future(_supervised(attachment))
        await asyncio.sleep(0)
        await asyncio.wait_for(attachment.stop(), _WAIT)
        assert await asyncio.wait_for(supervisor, _WAIT) == "ended"
        assert attachment.last_global_position is None  # the event is not counted done


async def test_a_cancelled_waiter_is_still_cancelled() -> None:
    attachment = _processor([]).run_in_background(_Endless())
    supervisor = asyncio.ensure_future(_supervised(attachment))
    await asyncio.sleep(0)
    supervisor.cancel()  # as for a Task awaited, the attachment is cancelled with it
    with pytest.raises(asyncio.CancelledError):
        await supervisor
    assert not attachment.running


async def test_a_waiter_cancelled_during_stop_is_still_cancelled() -> None:
    attachment = _processor([]).run_in_background(_Endless())
    supervisor = asyncio.ensure_future(_supervised(attachment))
    await asyncio.sleep(0)
    stopping = asyncio.ensure_future(attachment.stop())
    supervisor.cancel()  # both at once: the waiter's own cancellation is not taken back
    with pytest.raises(asyncio.CancelledError):
        await supervisor
    await asyncio.wait_for(stopping, _WAIT)
