"""Middleware edge cases found in an audit: each test pins a fixed defect."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable

import pytest

from pepperpy.event import (
    DeadLetterMiddleware,
    DeduplicateMiddleware,
    Event,
    EventProcessor,
    LogMiddleware,
    RateLimitMiddleware,
    RetryMiddleware,
    RetryPolicy,
    TimeoutMiddleware,
    TraceMiddleware,
    ValidateMiddleware,
)


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


# -- bad configuration fails at construction, with a clear message ----------------------


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: DeduplicateMiddleware(ttl=math.nan), "ttl"),
        (lambda: TimeoutMiddleware(math.nan), "seconds"),
        (lambda: RateLimitMiddleware(math.nan), "rate"),
        (lambda: RateLimitMiddleware(math.nan, burst=2), "rate"),
        (lambda: RateLimitMiddleware(math.inf), "rate"),
        (lambda: RateLimitMiddleware(math.inf, burst=2), "rate"),
        (lambda: DeadLetterMiddleware(bus=object()), "bus"),
        (lambda: DeadLetterMiddleware(maxlen=-1), "maxlen"),
        (lambda: DeadLetterMiddleware(maxlen="10"), "maxlen"),
        (lambda: ValidateMiddleware(object()), "validator"),  # type: ignore[arg-type]
        (lambda: LogMiddleware(level="info"), "level"),  # type: ignore[arg-type]
        (lambda: LogMiddleware(error_level=None), "error_level"),  # type: ignore[arg-type]
        (lambda: LogMiddleware(fields={"a": 1}), "fields"),  # type: ignore[arg-type]
    ],
)
def test_bad_middleware_options_fail_at_construction(
    make: Callable[[], object], message: str
) -> None:
    with pytest.raises((TypeError, ValueError), match=message):
        make()


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        # a wrong type is a TypeError (docs/errors.md), a value out of range a ValueError
        (lambda: RateLimitMiddleware("10"), TypeError, "rate must be"),
        (lambda: RateLimitMiddleware(True), TypeError, "rate must be"),
        (lambda: RateLimitMiddleware(0), ValueError, "rate must be"),
        (lambda: RateLimitMiddleware(10, burst=2.0), TypeError, "burst must be an int >= 1"),
        (lambda: RateLimitMiddleware(10, burst=True), TypeError, "burst must be an int >= 1"),
        (lambda: RateLimitMiddleware(10, burst=0), ValueError, "burst must be an int >= 1"),
        (lambda: DeadLetterMiddleware(maxlen="10"), TypeError, "maxlen must be an int >= 0"),
        (lambda: DeadLetterMiddleware(maxlen=-1), ValueError, "maxlen must be an int >= 0"),
    ],
)
def test_middleware_options_tell_a_wrong_type_from_a_bad_value(
    make: Callable[[], object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message) as caught:
        make()
    assert type(caught.value) is error


# -- logging never changes the outcome ---------------------------------------------------


async def test_log_fields_named_like_log_record_attributes_do_not_fail_processing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    processor = EventProcessor().use(LogMiddleware(fields=lambda event: {"name": "shop"}))
    processor.handle("#", lambda event: None)
    with caplog.at_level(logging.INFO, logger="pepperpy.event.processor"):
        await processor.process(Event("order.placed"))
    [record] = [r for r in caplog.records if r.name == "pepperpy.event.processor"]
    assert record.field_name == "shop"  # type: ignore[attr-defined]


async def test_a_failing_log_fields_callable_does_not_fail_processing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    processor = EventProcessor().use(
        RetryMiddleware(RetryPolicy.fixed(max_attempts=3, base_delay=0)),
        LogMiddleware(fields=lambda event: {"tenant": event.metadata["tenant"]}),
    )
    runs: list[str] = []
    processor.handle("#", lambda event: runs.append(event.id))
    with caplog.at_level(logging.INFO, logger="pepperpy.event.processor"):
        await processor.process(Event("order.placed"))
    assert len(runs) == 1  # not retried: the handler succeeded
    assert any(r.getMessage().startswith("processed order.placed") for r in caplog.records)


# -- tracing never fails processing over a malformed carrier ----------------------------

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.mark.parametrize(
    ("value", "continues"),
    [(TRACEPARENT.encode(), True), (123, False), (None, False), ("garbage", False)],
)
async def test_trace_survives_a_traceparent_that_is_not_a_string(
    value: object, continues: bool
) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    processor = EventProcessor().use(TraceMiddleware(provider))
    runs: list[str] = []
    processor.handle("#", lambda event: runs.append(event.id))
    await processor.process(Event("x", metadata={"traceparent": value, "tracestate": 5}))
    assert len(runs) == 1
    [span] = exporter.get_finished_spans()
    assert span.context is not None
    assert (span.context.trace_id == int(TRACEPARENT[3:35], 16)) is continues
    provider.shutdown()


# -- rate limit --------------------------------------------------------------------------


def test_one_rate_limit_middleware_serves_successive_event_loops() -> None:
    limit = RateLimitMiddleware(200, burst=1)

    async def burst() -> None:
        await asyncio.gather(*(limit.acquire() for _ in range(3)))

    asyncio.run(burst())
    asyncio.run(burst())  # the waiting line of the first loop must not be reused
