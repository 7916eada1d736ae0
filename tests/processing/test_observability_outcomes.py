"""LogMiddleware and TraceMiddleware report every outcome: through a LoggerAdapter too,
and for an event cancelled from outside (an outer timeout, a shutdown)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, MutableMapping
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from pepperpy.event import (
    Event,
    EventProcessor,
    LogMiddleware,
    MetricsCollector,
    TimeoutMiddleware,
    TraceMiddleware,
)
from tests.processing.conftest import Capture

FIELDS = ("event_type", "event_id", "outcome", "duration_ms")


def failing_processor(log: LogMiddleware) -> EventProcessor:
    processor = EventProcessor().use(log)

    @processor.handle("job.run")
    def job(event: Event) -> None:
        if event.data == "fail":
            raise ConnectionError("down")

    return processor


async def run_ok_and_failing(processor: EventProcessor) -> tuple[Event, Event]:
    ok, failing = Event("job.run", "ok", {"tenant": "m1"}), Event("job.run", "fail")
    await processor.process(ok)
    with pytest.raises(ConnectionError):
        await processor.process(failing)
    return ok, failing


async def test_a_logger_adapter_keeps_the_structured_fields_and_its_own(
    captured: tuple[logging.Logger, Capture],
) -> None:
    logger, capture = captured
    adapter = logging.LoggerAdapter(logger, {"tenant": "t1", "region": "eu"})
    log = LogMiddleware(adapter, fields=lambda e: {"tenant": e.metadata.get("tenant", "-")})
    ok, failing = await run_ok_and_failing(failing_processor(log))
    assert len(capture.records) == 2
    for record, event, outcome in zip(capture.records, (ok, failing), ("ok", "error"), strict=True):
        assert {field: hasattr(record, field) for field in FIELDS} == dict.fromkeys(FIELDS, True)
        assert (record.event_type, record.event_id, record.outcome) == (
            "job.run",
            event.id,
            outcome,
        )
        assert record.region == "eu"  # the adapter's own field stays
    # fields() is the library's: it wins over the adapter's value of the same key
    assert [r.tenant for r in capture.records] == ["m1", "-"]
    failure = capture.records[1]
    assert failure.levelno == logging.ERROR
    assert failure.exc_info is not None and isinstance(failure.exc_info[1], ConnectionError)


class Prefixed(logging.LoggerAdapter):  # type: ignore[type-arg]
    """An adapter with its own process(): it must still run."""

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        msg, kwargs = super().process(msg, kwargs)
        return f"[{self.extra['request']}] {msg}", kwargs


async def test_a_custom_and_nested_adapter_still_process_the_record(
    captured: tuple[logging.Logger, Capture],
) -> None:
    logger, capture = captured
    inner = logging.LoggerAdapter(logger, {"service": "billing", "zone": "inner"})
    adapter = Prefixed(inner, {"request": "r-7", "zone": "outer"})
    ok, _ = await run_ok_and_failing(failing_processor(LogMiddleware(adapter)))
    first = capture.records[0]
    assert first.getMessage().startswith("[r-7] processed job.run")
    assert (first.outcome, first.event_id, first.request) == ("ok", ok.id, "r-7")
    assert capture.records[1].outcome == "error"
    assert [(r.service, r.zone) for r in capture.records] == [("billing", "outer")] * 2


async def test_a_disabled_level_through_an_adapter_logs_nothing(
    captured: tuple[logging.Logger, Capture],
) -> None:
    logger, capture = captured
    logger.setLevel(logging.WARNING)
    adapter = logging.LoggerAdapter(logger, {"tenant": "t1"})
    await run_ok_and_failing(failing_processor(LogMiddleware(adapter)))
    assert [(r.levelno, r.outcome) for r in capture.records] == [(logging.ERROR, "error")]


@pytest.fixture
def tracing() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def stuck_processor(*middleware: Any) -> tuple[EventProcessor, asyncio.Event]:
    """A processor whose handler never finishes; the event is set once it runs."""
    processor = EventProcessor().use(*middleware)
    running = asyncio.Event()

    @processor.handle("job.stuck")
    async def stuck(event: Event) -> None:
        running.set()
        await asyncio.Event().wait()  # never set: only a cancellation ends it

    return processor, running


def assert_cancelled(records: list[logging.LogRecord], spans: tuple[ReadableSpan, ...]) -> None:
    assert [(r.levelno, r.outcome, r.event_type) for r in records] == [
        (logging.ERROR, "cancelled", "job.stuck")
    ]
    record = records[0]
    assert record.exc_info is None  # a cancellation has no traceback worth logging
    assert isinstance(record.duration_ms, float) and record.duration_ms >= 0
    assert record.getMessage().startswith("cancelled job.stuck")
    assert len(spans) == 1
    span = spans[0]
    assert span.name == "process job.stuck"
    assert (span.status.status_code, span.status.description) == (StatusCode.ERROR, "cancelled")
    assert span.attributes is not None and span.attributes["error.type"] == "cancelled"


async def test_an_outer_timeout_is_logged_as_cancelled_and_fails_the_span(
    captured: tuple[logging.Logger, Capture],
    tracing: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    logger, capture = captured
    provider, exporter = tracing
    collector = MetricsCollector()
    processor, _ = stuck_processor(
        TimeoutMiddleware(0.05),  # outermost: limits the whole chain
        collector.measure("jobs"),
        LogMiddleware(logger),
        TraceMiddleware(provider),
    )
    with pytest.raises(TimeoutError):
        await processor.process(Event("job.stuck"))
    assert (collector.get_metrics("jobs").count, collector.get_metrics("jobs").errors) == (1, 1)
    assert_cancelled(capture.records, exporter.get_finished_spans())


async def test_a_cancelled_task_is_logged_as_cancelled_and_fails_the_span(
    captured: tuple[logging.Logger, Capture],
    tracing: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    logger, capture = captured
    provider, exporter = tracing
    processor, running = stuck_processor(TraceMiddleware(provider), LogMiddleware(logger))
    task = asyncio.create_task(processor.process(Event("job.stuck")))
    await running.wait()
    task.cancel()  # a shutdown: the cancellation itself must still come out
    with pytest.raises(asyncio.CancelledError):
        await task
    assert_cancelled(capture.records, exporter.get_finished_spans())


async def test_a_cancelled_event_is_logged_through_an_adapter_too(
    captured: tuple[logging.Logger, Capture],
) -> None:
    logger, capture = captured
    adapter = logging.LoggerAdapter(logger, {"tenant": "t1"})
    processor, running = stuck_processor(LogMiddleware(adapter, error_level=logging.WARNING))
    task = asyncio.create_task(processor.process(Event("job.stuck")))
    await running.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [(r.levelno, r.outcome, r.tenant) for r in capture.records] == [
        (logging.WARNING, "cancelled", "t1")
    ]
