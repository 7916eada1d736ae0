"""Documented outcomes of middleware combinations (docs/processing.md, "Order matters")."""

from __future__ import annotations

import asyncio

import pytest

from pepperpy.event import (
    DeadLetterMiddleware,
    DeduplicateMiddleware,
    Event,
    EventProcessor,
    RetryMiddleware,
    RetryPolicy,
    TimeoutMiddleware,
)


async def test_retries_exhausted_give_one_dead_letter_with_the_last_error() -> None:
    dead = DeadLetterMiddleware()
    processor = EventProcessor().use(
        dead, RetryMiddleware(RetryPolicy.fixed(max_attempts=3, base_delay=0))
    )
    tries: list[int] = []

    @processor.handle("x")
    async def failing(event: Event) -> None:
        tries.append(1)
        raise ConnectionError(f"try {len(tries)}")

    await processor.process(Event("x"))
    assert len(tries) == 3
    [letter] = dead.dead_letters
    assert str(letter.exception) == "try 3" and letter.attempts == 3
    assert letter.handler is failing


async def test_a_cancellation_during_a_backoff_wait_is_no_failure() -> None:
    dead = DeadLetterMiddleware()
    processor = EventProcessor().use(
        dead, RetryMiddleware(RetryPolicy.fixed(max_attempts=5, base_delay=60))
    )
    failed = asyncio.Event()

    @processor.handle("x")
    async def failing(event: Event) -> None:
        failed.set()
        raise ConnectionError("down")

    task = asyncio.create_task(processor.process(Event("x")))
    await failed.wait()
    for _ in range(10):  # into the 60 s backoff wait
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not dead.dead_letters


async def test_a_deadline_swallowed_by_one_of_several_handlers_still_fails_the_event() -> None:
    processor = EventProcessor().use(
        RetryMiddleware(RetryPolicy.fixed(max_attempts=2, base_delay=0)), TimeoutMiddleware(0.01)
    )
    runs: list[str] = []

    @processor.handle("x")
    async def stubborn(event: Event) -> None:
        runs.append("stubborn")
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            pass  # returns anyway

    @processor.handle("x")
    async def quick(event: Event) -> None:
        runs.append("quick")

    bare = EventProcessor().use(TimeoutMiddleware(0.01))
    bare.handle("x", stubborn)
    bare.handle("x", quick)
    with pytest.raises(TimeoutError):
        await bare.process(Event("x"))
    runs.clear()
    await processor.process(Event("x"))  # the retry finds every handler finished
    assert sorted(runs) == ["quick", "stubborn"]


async def test_one_deduplicate_middleware_in_two_processors_skips_across_them() -> None:
    dedupe = DeduplicateMiddleware()
    first, second = EventProcessor().use(dedupe), EventProcessor().use(dedupe)
    runs: list[str] = []
    first.handle("x", lambda event: runs.append("first"))
    second.handle("x", lambda event: runs.append("second"))
    event = Event("x")
    await first.process(event)
    await second.process(event)
    assert runs == ["first"]  # hence: one per processor
