"""Processors fed by real backends: a Redis bus, SQLite and PostgreSQL stores."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from pepperpy.event import (
    Event,
    EventBus,
    EventProcessor,
    EventStore,
    RetryPolicy,
    TraceMiddleware,
    trace_headers,
)
from tests.conftest import unique_name
from tests.helpers import delete_redis_keys, eventually


@pytest.fixture
async def bus_url(redis_url: str) -> AsyncIterator[str]:
    namespace = unique_name("proc")
    yield f"{redis_url}?namespace={namespace}"
    await delete_redis_keys(redis_url, f"{namespace}:*")


@pytest.mark.redis
async def test_grouped_processors_share_the_work_across_buses(bus_url: str) -> None:
    seen: dict[str, list[int]] = {"a": [], "b": []}
    buses = []
    for name in ("a", "b"):  # two buses stand for two processes
        bus = EventBus(transport=bus_url, retry_policy=RetryPolicy.NONE)
        processor = EventProcessor()
        processor.handle("orders.*", lambda e, name=name: seen[name].append(e.data["n"]))
        processor.attach(bus, "orders.*", group="billing")
        await bus.start()
        buses.append(bus)
    publisher = EventBus(transport=bus_url)
    try:
        for n in range(20):
            await publisher.publish("orders.placed", {"n": n}, key=f"order-{n}")
        await eventually(lambda: len(seen["a"]) + len(seen["b"]) == 20)
        assert sorted(seen["a"] + seen["b"]) == list(range(20))  # each event once
    finally:
        for bus in [*buses, publisher]:
            await bus.close()


@pytest.mark.redis
async def test_a_trace_continues_across_a_redis_hop(bus_url: str) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    producer_bus = EventBus(transport=bus_url)
    consumer_bus = EventBus(transport=bus_url, retry_policy=RetryPolicy.NONE)
    checkout = EventProcessor().use(TraceMiddleware(provider))
    billing = EventProcessor().use(TraceMiddleware(provider))
    received: list[Event] = []
    billing.handle("orders.paid", received.append)
    billing.attach(consumer_bus, "orders.paid", group="billing")

    @checkout.handle("orders.placed")
    async def pay(event: Event) -> None:
        await producer_bus.publish("orders.paid", event.data, headers=trace_headers())

    try:
        await consumer_bus.start()
        await checkout.process(Event("orders.placed", {"order": 3}))
        await eventually(lambda: len(received) == 1)
        await eventually(lambda: len(exporter.get_finished_spans()) == 2)
    finally:
        await producer_bus.close()
        await consumer_bus.close()
        provider.shutdown()
    spans = {span.name: span for span in exporter.get_finished_spans()}
    placed, paid = spans["process orders.placed"], spans["process orders.paid"]
    assert placed.context is not None and paid.context is not None
    assert paid.context.trace_id == placed.context.trace_id
    assert paid.parent is not None and paid.parent.span_id == placed.context.span_id


@pytest.mark.postgres
async def test_attach_to_a_postgres_store_subscription(postgres_url: str) -> None:
    store = EventStore(postgres_url)
    processor = EventProcessor()
    seen: list[int] = []
    processor.handle("tick", lambda e: seen.append(e.data["n"]))
    try:
        await store.append("clock", {"type": "tick", "data": {"n": 0}})
        attachment = processor.attach(store, "tick", from_position=0)
        for n in range(1, 4):
            await store.append("clock", {"type": "tick", "data": {"n": n}})
        await eventually(lambda: len(seen) == 4)
        assert seen == [0, 1, 2, 3]
        await attachment.stop()
    finally:
        await store.close()


async def test_attach_to_a_sqlite_store_subscription(sqlite_url: str) -> None:
    store = EventStore(sqlite_url)
    processor = EventProcessor()
    seen: list[int] = []
    processor.handle("tick", lambda e: seen.append(e.data["n"]))
    try:
        attachment = processor.attach(store, "tick")
        for n in range(3):
            await store.append("clock", {"type": "tick", "data": {"n": n}})
        await eventually(lambda: len(seen) == 3)
        await attachment.stop()
        assert attachment.last_global_position is not None
    finally:
        await store.close()
