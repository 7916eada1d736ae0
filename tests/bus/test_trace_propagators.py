"""trace_headers() and TraceMiddleware use the application's configured propagators.

They wrote and read W3C ``traceparent`` only, so the publisher's baggage (a tenant id)
did not cross a broker, nor did the headers of a propagator the application configured
instead (B3, Jaeger). Both now go through OpenTelemetry's global text map, which is
W3C Trace Context plus W3C Baggage unless configured otherwise.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from opentelemetry import baggage, context, propagate, trace
from opentelemetry.propagators.textmap import (
    CarrierT,
    Getter,
    Setter,
    TextMapPropagator,
    default_getter,
    default_setter,
)
from opentelemetry.sdk.trace import TracerProvider

from pepperpy.event import Event, EventBus, EventProcessor, TraceMiddleware, trace_headers
from tests.conftest import unique_name
from tests.helpers import delete_redis_keys, eventually

pytestmark = pytest.mark.redis


@pytest.fixture
async def bus_url(redis_url: str) -> AsyncIterator[str]:
    namespace = unique_name("pepotel")
    yield f"{redis_url}?namespace={namespace}"
    await delete_redis_keys(redis_url, f"{namespace}:*")


async def handled_across_redis(url: str, provider: TracerProvider) -> dict[str, Any]:
    """Publish with trace_headers() under a span and baggage; what the consumer saw."""
    seen: dict[str, Any] = {}
    consumer = EventBus(transport=url)
    processor = EventProcessor().use(TraceMiddleware(provider))

    @processor.handle("orders.placed")
    async def record(event: Event) -> None:
        seen["metadata"] = sorted(event.metadata)
        seen["baggage"] = dict(baggage.get_all())
        seen["trace_id"] = trace.get_current_span().get_span_context().trace_id

    processor.attach(consumer, "orders.placed")
    publisher = EventBus(transport=url)
    token = context.attach(baggage.set_baggage("tenant", "acme"))
    try:
        async with consumer, publisher:
            with provider.get_tracer("test").start_as_current_span("POST /orders") as span:
                seen["published_trace_id"] = span.get_span_context().trace_id
                await publisher.publish("orders.placed", {}, headers=trace_headers())
            await eventually(lambda: "baggage" in seen)
    finally:
        context.detach(token)
    return seen


async def test_baggage_crosses_the_bus_with_the_trace(bus_url: str) -> None:
    seen = await handled_across_redis(bus_url, TracerProvider())
    assert seen["metadata"] == ["baggage", "traceparent"]
    assert seen["baggage"] == {"tenant": "acme"}
    assert seen["trace_id"] == seen["published_trace_id"]


class _OwnHeader(TextMapPropagator):
    """A stand-in for B3 or Jaeger: the trace id in a header of its own name."""

    def inject(
        self, carrier: CarrierT, context: Any = None, setter: Setter[CarrierT] = default_setter
    ) -> None:
        span_context = trace.get_current_span(context).get_span_context()
        if span_context.is_valid:
            setter.set(carrier, "x-own-trace", f"{span_context.trace_id:032x}")

    def extract(
        self, carrier: CarrierT, context: Any = None, getter: Getter[CarrierT] = default_getter
    ) -> Any:
        [value] = getter.get(carrier, "x-own-trace") or [None]
        if value is None:
            return context
        parent = trace.SpanContext(int(value, 16), 1, is_remote=True)
        return trace.set_span_in_context(trace.NonRecordingSpan(parent), context)

    @property
    def fields(self) -> set[str]:
        return {"x-own-trace"}


@pytest.fixture
def own_propagator() -> Iterator[None]:
    before = propagate.get_global_textmap()
    propagate.set_global_textmap(_OwnHeader())
    yield
    propagate.set_global_textmap(before)


@pytest.mark.usefixtures("own_propagator")
async def test_a_configured_propagator_is_used_both_ways(bus_url: str) -> None:
    seen = await handled_across_redis(bus_url, TracerProvider())
    assert seen["metadata"] == ["x-own-trace"]  # no traceparent: not configured
    assert seen["trace_id"] == seen["published_trace_id"]
