"""Middleware options set after the middleware was made are checked as the constructor
checks them.

They were plain attributes: ``RetryMiddleware.policy = 3`` failed the next failing event
with ``AttributeError: 'int' object has no attribute 'should_retry'`` from deep inside,
``RateLimitMiddleware.rate = 0`` every event with ``ZeroDivisionError``, ``burst = 0``
made every event wait forever for a token that could never be, and
``DeduplicateMiddleware.ttl = "600"`` failed the next event after its handlers had run,
and so did ``LogMiddleware.level = "INFO"`` or ``.logger = "name"``, although logging
never changes an event's outcome (a retry further out ran the handlers again).
A good value set later applies from then on.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from pepperpy.event import (
    DeduplicateMiddleware,
    Event,
    EventProcessor,
    LogMiddleware,
    RateLimitMiddleware,
    RetryMiddleware,
    RetryPolicy,
)

BAD: list[tuple[Any, str, object, type[Exception], str]] = [
    (RetryMiddleware(), "policy", 3, TypeError, "policy must be a RetryPolicy"),
    (RetryMiddleware(), "policy", None, TypeError, "policy must be a RetryPolicy"),
    (RateLimitMiddleware(5), "rate", 0, ValueError, "rate must be a finite number"),
    (RateLimitMiddleware(5), "rate", float("nan"), ValueError, "rate must be a finite number"),
    (RateLimitMiddleware(5), "rate", "5", TypeError, "rate must be a finite number"),
    (RateLimitMiddleware(5), "burst", 0, ValueError, "burst must be an int >= 1"),
    (RateLimitMiddleware(5), "burst", 2.5, TypeError, "burst must be an int"),
    (DeduplicateMiddleware(), "ttl", "600", TypeError, "ttl must be a finite number"),
    (DeduplicateMiddleware(), "ttl", -1, ValueError, "ttl must be a finite number"),
    (DeduplicateMiddleware(), "max_size", 0, ValueError, "max_size must be an int >= 1"),
    (LogMiddleware(), "level", "INFO", TypeError, "level must be a logging level"),
    (LogMiddleware(), "error_level", None, TypeError, "error_level must be a logging level"),
    (LogMiddleware(), "logger", 5, TypeError, "logger must be a logging.Logger"),
    (LogMiddleware(), "fields", 5, TypeError, "fields must be a callable"),
]


@pytest.mark.parametrize(
    "middleware, option, value, error, message",
    BAD,
    ids=[f"{type(case[0]).__name__}.{case[1]}={case[2]!r}" for case in BAD],
)
def test_a_bad_value_is_refused_when_set(
    middleware: Any, option: str, value: object, error: type[Exception], message: str
) -> None:
    before = getattr(middleware, option)
    with pytest.raises(error, match=message):
        setattr(middleware, option, value)
    assert getattr(middleware, option) == before


async def test_a_retry_policy_set_later_is_the_one_followed() -> None:
    retry = RetryMiddleware(RetryPolicy.NONE)
    processor = EventProcessor().use(retry)
    tries: list[int] = []

    @processor.handle("job.run")
    async def flaky(event: Event) -> None:
        tries.append(1)
        if len(tries) < 3:
            raise ConnectionError("not yet")

    retry.policy = RetryPolicy.fixed(max_attempts=3, base_delay=0)
    await processor.process(Event("job.run"))
    assert len(tries) == 3


async def test_a_rate_and_burst_set_later_are_the_ones_followed() -> None:
    limit = RateLimitMiddleware(1, burst=1)
    processor = EventProcessor().use(limit)
    processor.handle("job.run", lambda event: None)
    limit.rate = 1000
    limit.burst = 5
    loop = asyncio.get_running_loop()
    began = loop.time()
    for _ in range(20):
        await processor.process(Event("job.run"))
    assert loop.time() - began < 0.5  # 1 event/s would take 19 s


async def test_a_ttl_set_later_applies_to_what_succeeds_then() -> None:
    dedupe = DeduplicateMiddleware(ttl=600)
    processor = EventProcessor().use(dedupe)
    seen: list[str] = []
    processor.handle("job.run", lambda event: seen.append(event.id))
    dedupe.ttl = 0.01
    event = Event("job.run")
    await processor.process(event)
    await asyncio.sleep(0.05)
    await processor.process(event)  # forgotten after the new ttl: runs again
    assert seen == [event.id, event.id]


async def test_a_logger_set_later_by_name_gets_the_records(
    captured: tuple[logging.Logger, Any],
) -> None:
    logger, capture = captured
    log = LogMiddleware()
    processor = EventProcessor().use(log)
    processor.handle("job.run", lambda event: None)
    log.logger = logger.name
    log.level = logging.WARNING
    await processor.process(Event("job.run"))
    (record,) = capture.records
    assert record.levelno == logging.WARNING
    assert getattr(record, "outcome", None) == "ok"
