"""Processors whose ``RetryMiddleware`` waits for far longer than a test runs, for the
tests of a ``stop()`` (or a close) during a retry wait: a stop that waited it out would
time out."""

from __future__ import annotations

import asyncio
from collections.abc import Container

from pepperpy.event import DeadLetterMiddleware, Event, EventProcessor, RetryMiddleware, RetryPolicy

#: far longer than any test may run: a stop that waited for it would time out
PAUSE = 3600.0


def failing_processor(
    tried: list[int], first_try: asyncio.Event, failing: Container[int] | None = None
) -> tuple[EventProcessor, DeadLetterMiddleware]:
    """Handles ``order.*`` with up to 5 tries ``PAUSE`` apart, recording each event's
    ``n`` in ``tried``; the events whose ``n`` is in ``failing`` (every event if None)
    fail with ``ConnectionError`` and set ``first_try``. Returns the processor and its
    ``DeadLetterMiddleware``."""
    letters = DeadLetterMiddleware()
    retry = RetryMiddleware(RetryPolicy.fixed(max_attempts=5, base_delay=PAUSE))
    processor = EventProcessor().use(letters, retry)

    @processor.handle("order.*")
    async def charge(event: Event) -> None:
        number = event.data["n"]
        tried.append(number)
        if failing is None or number in failing:
            first_try.set()
            raise ConnectionError("payment gateway down")

    return processor, letters


def gated_processor(
    tried: list[int], started: asyncio.Event, gate: asyncio.Event
) -> EventProcessor:
    """Handles ``order.*`` with up to 3 tries ``PAUSE`` apart: each try records the
    event's ``n``, sets ``started``, waits for ``gate``, then fails."""
    processor = EventProcessor().use(
        RetryMiddleware(RetryPolicy.fixed(max_attempts=3, base_delay=PAUSE))
    )

    @processor.handle("order.*")
    async def charge(event: Event) -> None:
        tried.append(event.data["n"])
        started.set()
        await gate.wait()
        raise ConnectionError("payment gateway down")

    return processor
