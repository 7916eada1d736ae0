"""A duplicate of an event still in progress waits for the first copy's outcome.

It used to be skipped at once, i.e. reported processed (acknowledged by a bus group,
passed by a store attachment) while the first copy might still fail or never finish.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

from pepperpy.event import DeduplicateMiddleware, Event, EventProcessor


async def turns(n: int = 20) -> None:
    """Let the other tasks run for ``n`` loop iterations."""
    for _ in range(n):
        await asyncio.sleep(0)


def gated() -> tuple[
    EventProcessor, DeduplicateMiddleware, list[str], asyncio.Event, asyncio.Event
]:
    dedupe = DeduplicateMiddleware()
    processor = EventProcessor().use(dedupe)
    runs: list[str] = []
    started = asyncio.Event()
    release = asyncio.Event()

    @processor.handle("job")
    async def handler(event: Event) -> None:
        runs.append("run")
        if len(runs) == 1:
            started.set()
            await release.wait()
            if event.data == "fail first":
                raise ConnectionError("first copy failed")

    return processor, dedupe, runs, started, release


async def test_a_duplicate_of_a_failing_event_in_progress_runs_after_it_fails() -> None:
    processor, dedupe, runs, started, release = gated()
    event = Event("job", "fail first")
    first = asyncio.create_task(processor.process(event))
    await started.wait()
    second = asyncio.create_task(processor.process(event))
    await turns()
    assert not second.done()  # not reported done while the first copy may still fail
    release.set()
    with pytest.raises(ConnectionError):
        await first
    await second  # ran itself, as a redelivery of a failed event does
    assert runs == ["run", "run"]
    assert dedupe.skipped == 0
    assert dedupe.seen(event.id)


async def test_a_duplicate_of_a_succeeding_event_in_progress_is_skipped_once_it_succeeds() -> None:
    processor, dedupe, runs, started, release = gated()
    event = Event("job", "ok")
    first = asyncio.create_task(processor.process(event))
    await started.wait()
    second = asyncio.create_task(processor.process(event))
    await turns()
    assert not second.done()
    release.set()
    await asyncio.gather(first, second)
    assert runs == ["run"]
    assert dedupe.skipped == 1
    assert len(dedupe) == 1


async def test_a_waiting_duplicate_cancelled_leaves_nothing_behind() -> None:
    processor, dedupe, runs, started, release = gated()
    event = Event("job", "ok")
    first = asyncio.create_task(processor.process(event))
    await started.wait()
    second = asyncio.create_task(processor.process(event))
    await turns()
    second.cancel()
    with pytest.raises(asyncio.CancelledError):
        await second
    assert dedupe._running[event.id] == []  # its wait was withdrawn
    release.set()
    await first
    assert runs == ["run"] and dedupe.skipped == 0 and not dedupe._running


async def test_a_handler_processing_its_own_event_again_does_not_wait_for_itself() -> None:
    dedupe = DeduplicateMiddleware()
    processor = EventProcessor().use(dedupe)
    runs: list[str] = []

    @processor.handle("job")
    async def handler(event: Event) -> None:
        runs.append("run")
        if len(runs) == 1:  # in a task of its own too: that task waits for nothing
            await asyncio.wait_for(asyncio.create_task(processor.process(event)), 5)
            await processor.process(event)

    await processor.process(Event("job"))
    assert runs == ["run"]
    assert dedupe.skipped == 2


async def test_several_waiting_duplicates_of_a_failed_event_run_it_once_more() -> None:
    processor, dedupe, runs, started, release = gated()
    event = Event("job", "fail first")
    first = asyncio.create_task(processor.process(event))
    await started.wait()
    others = [asyncio.create_task(processor.process(event)) for _ in range(3)]
    await turns()
    release.set()
    with pytest.raises(ConnectionError):
        await first
    await asyncio.gather(*others)
    assert runs == ["run", "run"]  # one of them ran it; the others saw it succeed
    assert dedupe.skipped == 2


def test_a_duplicate_on_another_event_loop_waits_for_the_first_copy_too() -> None:
    dedupe = DeduplicateMiddleware()
    processor = EventProcessor().use(dedupe)
    runs: list[str] = []
    started, release = threading.Event(), threading.Event()

    @processor.handle("job")
    async def handler(event: Event) -> None:
        runs.append(threading.current_thread().name)
        if len(runs) == 1:
            started.set()
            await asyncio.to_thread(release.wait, 30)
            raise ConnectionError("first copy failed")

    event = Event("job")
    outcomes: dict[str, BaseException | None] = {}

    def process(name: str) -> None:
        try:
            asyncio.run(processor.process(event))
            outcomes[name] = None
        except BaseException as exc:  # recorded for the assertions below
            outcomes[name] = exc

    first = threading.Thread(target=process, args=("first",), name="first")
    first.start()
    assert started.wait(30)
    second = threading.Thread(target=process, args=("second",), name="second")
    second.start()
    second.join(0.2)
    assert second.is_alive()  # waiting for the first copy (which cannot end before release)
    release.set()
    first.join(30)
    second.join(30)
    assert isinstance(outcomes["first"], ConnectionError)
    assert outcomes["second"] is None
    assert runs == ["first", "second"]
    assert not dedupe._running
