"""TraceMiddleware with the OpenTelemetry SDK's in-memory exporter, across a bus hop."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from pepperpy.event import (
    Event,
    EventBus,
    EventProcessor,
    RetryPolicy,
    TraceMiddleware,
    trace_headers,
)


@pytest.fixture
def tracing() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


async def test_a_trace_continues_across_a_bus_hop(
    tracing: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = tracing
    bus = EventBus(["orders.*"], retry_policy=RetryPolicy.NONE)

    checkout = EventProcessor().use(TraceMiddleware(provider))

    @checkout.handle("orders.placed")
    async def charge(event: Event) -> None:
        await bus.publish("orders.paid", {"order": event.data["order"]}, headers=trace_headers())

    billing = EventProcessor().use(TraceMiddleware(provider))
    received: list[Event] = []
    billing.handle("orders.paid", received.append)
    billing.attach(bus, "orders.paid")

    async with bus:
        await checkout.process(Event("orders.placed", {"order": 7}))

    assert len(received) == 1
    assert "traceparent" in received[0].metadata
    spans = {span.name: span for span in exporter.get_finished_spans()}
    placed, paid = spans["process orders.placed"], spans["process orders.paid"]
    assert placed.context is not None and paid.context is not None
    assert paid.context.trace_id == placed.context.trace_id
    assert paid.parent is not None and paid.parent.span_id == placed.context.span_id
    assert paid.kind == SpanKind.CONSUMER
    assert paid.attributes is not None
    assert paid.attributes["messaging.message.id"] == received[0].id


async def test_the_traceparent_survives_the_cloudevents_wire_format(
    tracing: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = tracing
    tracer = provider.get_tracer("producer")
    with tracer.start_as_current_span("publish") as producer_span:
        event = Event("orders.paid", {"order": 1}, trace_headers())
    wire = event.to_cloudevent()
    assert wire["traceparent"].startswith("00-")  # the CloudEvents distributed-tracing extension
    arrived = Event.from_json(event.to_json())
    processor = EventProcessor().use(TraceMiddleware(provider))
    await processor.process(arrived)
    (consumed,) = [s for s in exporter.get_finished_spans() if s.name.startswith("process")]
    assert consumed.context is not None and consumed.parent is not None
    assert consumed.context.trace_id == producer_span.get_span_context().trace_id


async def test_without_a_traceparent_a_new_trace_starts(
    tracing: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = tracing
    processor = EventProcessor().use(TraceMiddleware(provider))
    await processor.process(Event("a"))
    (span,) = exporter.get_finished_spans()
    assert span.parent is None


@pytest.mark.parametrize("traceparent", ["garbage", "00-" + "0" * 32 + "-" + "1" * 16 + "-01"])
async def test_a_malformed_traceparent_is_ignored_and_the_callers_span_is_the_parent(
    tracing: tuple[TracerProvider, InMemorySpanExporter], traceparent: str
) -> None:
    # W3C Trace Context: an invalid traceparent is ignored, so the current context
    # applies - the span is a child of the caller's span, not the root of a new trace
    provider, exporter = tracing
    processor = EventProcessor().use(TraceMiddleware(provider))
    with provider.get_tracer("test").start_as_current_span("caller") as caller:
        await processor.process(Event("a", metadata={"traceparent": traceparent}))
    span = next(s for s in exporter.get_finished_spans() if s.name == "process a")
    assert span.parent is not None
    assert span.parent.span_id == caller.get_span_context().span_id
    assert span.context.trace_id == caller.get_span_context().trace_id


async def test_failures_are_recorded_on_the_span(
    tracing: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = tracing
    processor = EventProcessor().use(TraceMiddleware(provider))

    @processor.handle("a")
    def fail(event: Event) -> Any:
        raise ValueError("bad")

    with pytest.raises(ValueError):
        await processor.process(Event("a"))
    (span,) = exporter.get_finished_spans()
    assert span.status.status_code == StatusCode.ERROR
    assert any(e.name == "exception" for e in span.events)


def test_trace_headers_are_empty_outside_a_span() -> None:
    assert trace_headers() == {}
