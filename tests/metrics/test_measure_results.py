"""What a measurement reports when the measured work is not simply a call that returns.

A sync callable that hands back an awaitable (``lambda event: charge(event)``, which the
manager, bus and processor all accept as a handler) is measured until that awaitable is
done; a name reset with nothing recorded since exports no latency rather than zero.
"""

from __future__ import annotations

import asyncio
import gc
import math
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from prometheus_client.parser import text_string_to_metric_families

from pepperpy.event import Event, EventManager, MetricsCollector


async def charge(event: Any, release: asyncio.Event, fail: bool) -> str:
    await release.wait()
    if fail:
        raise ValueError("card declined")
    return "charged"


@pytest.mark.parametrize("fail", [False, True])
async def test_a_sync_callable_returning_a_coroutine_is_measured_until_it_is_done(
    fail: bool,
) -> None:
    collector = MetricsCollector()
    release = asyncio.Event()
    measured = collector.measure("charge")(lambda event: charge(event, release, fail))
    pending = measured(Event("order.placed"))
    assert collector.get_metrics("charge").count == 0, "nothing is done yet"
    asyncio.get_running_loop().call_later(0.05, release.set)
    if fail:
        with pytest.raises(ValueError, match="card declined"):
            await pending
    else:
        assert await pending == "charged"
    metrics = collector.get_metrics("charge")
    assert (metrics.count, metrics.errors) == (1, int(fail))
    assert metrics.max_latency >= 40  # ms: the wait, not the making of the coroutine


async def test_a_failing_handler_through_the_manager_counts_as_an_error() -> None:
    collector = MetricsCollector()
    release = asyncio.Event()
    release.set()
    manager = EventManager()
    manager.on("order.placed", collector.measure("charge")(lambda e: charge(e, release, True)))
    await manager.emit("order.placed", {"id": 1})
    assert len(manager.dead_letters) == 1
    metrics = collector.get_metrics("charge")
    assert (metrics.count, metrics.errors) == (1, 1)


async def test_a_returned_task_stays_a_task_and_is_recorded_when_done() -> None:
    collector = MetricsCollector()
    release = asyncio.Event()
    loop = asyncio.get_running_loop()
    measured = collector.measure("spawn")(
        lambda: loop.create_task(charge(None, release, fail=False))
    )
    task = measured()
    assert isinstance(task, asyncio.Task), "the caller keeps what the function returned"
    release.set()
    assert await task == "charged"
    await asyncio.sleep(0)  # done callbacks run on the next loop iteration
    assert collector.get_metrics("spawn").count == 1


async def test_a_returned_task_that_fails_unawaited_is_still_reported_by_asyncio() -> None:
    collector = MetricsCollector()
    release = asyncio.Event()
    release.set()
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    try:
        task = collector.measure("spawn")(lambda: loop.create_task(charge(None, release, True)))()
        for _ in range(3):
            await asyncio.sleep(0)
        assert task.done()
        metrics = collector.get_metrics("spawn")
        assert (metrics.count, metrics.errors) == (1, 1)
        del task
        gc.collect()
        # measuring it did not retrieve the exception: asyncio still says nobody did
        assert [c["message"] for c in reported] == ["Task exception was never retrieved"]
    finally:
        loop.set_exception_handler(None)


def test_a_name_reset_with_nothing_since_exports_no_latency() -> None:
    collector = MetricsCollector()
    collector.record("orders", 0.002)
    collector.reset("orders")
    quantiles = {
        sample.labels["quantile"]: sample.value
        for family in text_string_to_metric_families(collector.to_prometheus())
        for sample in family.samples
        if sample.name == "pepperpy_event_latency_seconds"
    }
    assert set(quantiles) == {"0.5", "0.95", "0.99"}
    assert all(math.isnan(value) for value in quantiles.values()), quantiles
    collector.record("orders", 0.004)
    text = collector.to_prometheus()
    assert 'pepperpy_event_latency_seconds{name="orders",quantile="0.5"} 0.004' in text


def test_opentelemetry_reports_no_latency_for_a_name_reset_with_nothing_since() -> None:
    collector = MetricsCollector()
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    try:
        collector.instrument_opentelemetry(provider)
        collector.record("orders", 0.002)
        collector.reset("orders")

        def latency_points() -> list[Any]:
            data = reader.get_metrics_data()
            return [
                point
                for resource in data.resource_metrics
                for scope in resource.scope_metrics
                for metric in scope.metrics
                if metric.name == "pepperpy.event.latency"
                for point in metric.data.data_points
            ]

        assert latency_points() == []
        collector.record("orders", 0.004)
        assert {p.attributes["quantile"] for p in latency_points()} == {"avg", "p50", "p95", "p99"}
    finally:
        provider.shutdown()
