"""Middleware edge cases found in an audit: each test pins a fixed defect."""

from __future__ import annotations

import asyncio

from pepperpy.event import DeduplicateMiddleware, Event, EventProcessor


def slow_processor(
    dedupe: DeduplicateMiddleware, seconds: float
) -> tuple[EventProcessor, list[str]]:
    processor = EventProcessor().use(dedupe)
    runs: list[str] = []

    @processor.handle("#")
    async def slow(event: Event) -> None:
        runs.append(event.id)
        await asyncio.sleep(seconds)

    return processor, runs


async def test_deduplicate_skips_a_duplicate_of_an_event_in_progress_longer_than_ttl() -> None:
    processor, runs = slow_processor(DeduplicateMiddleware(ttl=0.02), 0.1)
    event = Event("x")
    first = asyncio.create_task(processor.process(event))
    await asyncio.sleep(0.05)  # the ttl has passed, the first copy is still running
    await processor.process(event)
    await first
    assert runs == [event.id]


async def test_deduplicate_ttl_counts_from_success() -> None:
    dedupe = DeduplicateMiddleware(ttl=0.05)
    processor, runs = slow_processor(dedupe, 0.06)
    event = Event("x")
    await processor.process(event)
    assert dedupe.seen(event.id)  # processed successfully just now: within the ttl
    await processor.process(event)
    assert runs == [event.id]


async def test_deduplicate_capacity_never_forgets_an_event_in_progress() -> None:
    processor, runs = slow_processor(DeduplicateMiddleware(max_size=1), 0.05)
    a, b = Event("a"), Event("b")
    await asyncio.gather(processor.process(a), processor.process(b), processor.process(a))
    assert sorted(runs) == sorted([a.id, b.id])
