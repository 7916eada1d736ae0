"""Interop: prometheus_client's parser and registry, OpenTelemetry's in-memory reader."""

from __future__ import annotations

import gc
import weakref
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from pepperpy.event import MetricsCollector


def filled() -> MetricsCollector:
    collector = MetricsCollector()
    for ms in range(1, 11):
        collector.record("orders", ms / 1000)
    collector.record("orders", 0.5, error=True)
    collector.record('odd "name"\\with\nstuff', 0.002)
    return collector


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_to_prometheus_is_read_by_prometheus_client() -> None:
    text = filled().to_prometheus()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["pepperpy_event_calls"].type == "counter"
    assert families["pepperpy_event_errors"].type == "counter"
    assert families["pepperpy_event_latency_seconds"].type == "summary"
    assert families["pepperpy_event_throughput"].type == "gauge"
    values = samples(text)
    orders = (("name", "orders"),)
    assert values[("pepperpy_event_calls_total", orders)] == 11
    assert values[("pepperpy_event_errors_total", orders)] == 1
    assert values[("pepperpy_event_latency_seconds_count", orders)] == 11
    assert values[("pepperpy_event_latency_seconds_sum", orders)] == pytest.approx(0.555, rel=1e-6)
    median = values[("pepperpy_event_latency_seconds", (("name", "orders"), ("quantile", "0.5")))]
    assert median == pytest.approx(0.006, rel=0.04)
    odd = (("name", 'odd "name"\\with\nstuff'),)
    assert values[("pepperpy_event_calls_total", odd)] == 1  # labels escaped and read back


def test_empty_collector_exposition_parses() -> None:
    families = list(text_string_to_metric_families(MetricsCollector().to_prometheus()))
    assert all(not family.samples for family in families)


def test_namespace_prefixes_metric_names() -> None:
    collector = MetricsCollector(namespace="shop")
    collector.record("a", 0.1)
    assert {f.name for f in text_string_to_metric_families(collector.to_prometheus())} == {
        "shop_calls",
        "shop_errors",
        "shop_latency_seconds",
        "shop_throughput",
    }


def test_registers_as_a_prometheus_client_collector() -> None:
    collector = filled()
    registry = CollectorRegistry()
    exporter = collector.register_prometheus(registry)
    first = samples(generate_latest(registry).decode())
    assert first[("pepperpy_event_calls_total", (("name", "orders"),))] == 11
    collector.record("orders", 0.001)  # values are fresh at every scrape
    second = samples(generate_latest(registry).decode())
    assert second[("pepperpy_event_calls_total", (("name", "orders"),))] == 12
    registry.unregister(exporter)
    assert generate_latest(registry) == b""


def test_opentelemetry_instruments_report_through_a_reader() -> None:
    collector = filled()
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    try:
        instruments = collector.instrument_opentelemetry(provider)
        assert len(instruments) == 4
        data = reader.get_metrics_data()
        assert data is not None
        points: dict[str, list[Any]] = {}
        for resource_metrics in data.resource_metrics:
            for scope in resource_metrics.scope_metrics:
                for metric in scope.metrics:
                    points[metric.name] = list(metric.data.data_points)
        calls = {p.attributes["name"]: p.value for p in points["pepperpy.event.calls"]}
        assert calls["orders"] == 11
        errors = {p.attributes["name"]: p.value for p in points["pepperpy.event.errors"]}
        assert errors["orders"] == 1
        latency = {
            (p.attributes["name"], p.attributes["quantile"]): p.value
            for p in points["pepperpy.event.latency"]
        }
        assert latency[("orders", "p50")] == pytest.approx(6, rel=0.04)
        assert ("orders", "p99") in latency
        assert "pepperpy.event.throughput" in points
    finally:
        provider.shutdown()


def _otel_calls(reader: InMemoryMetricReader) -> dict[str, Any]:
    data = reader.get_metrics_data()
    calls: dict[str, Any] = {}
    if data is None:
        return calls
    for resource_metrics in data.resource_metrics:
        for scope in resource_metrics.scope_metrics:
            for metric in scope.metrics:
                if metric.name == "pepperpy.event.calls":
                    calls.update({p.attributes["name"]: p.value for p in metric.data.data_points})
    return calls


def test_opentelemetry_instruments_detach_on_close() -> None:
    collector = filled()
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    try:
        instruments = collector.instrument_opentelemetry(provider)
        assert _otel_calls(reader)["orders"] == 11
        instruments.close()
        instruments.close()  # idempotent
        assert instruments.closed
        collector.record("orders", 0.001)
        assert _otel_calls(reader) == {}  # the meter keeps the instruments; they observe nothing
        alive = weakref.ref(collector)
        del collector
        gc.collect()
        assert alive() is None  # the provider no longer holds the collector
    finally:
        provider.shutdown()
    other = MeterProvider()
    try:
        with filled().instrument_opentelemetry(other) as scoped:
            assert len(scoped) == 4
        assert scoped.closed
    finally:
        other.shutdown()


def test_register_prometheus_refuses_a_family_registered_already() -> None:
    registry = CollectorRegistry()
    Counter("pepperpy_event_calls", "The application's own metric", ["name"], registry=registry)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        filled().register_prometheus(registry)

    shared = CollectorRegistry()
    first = filled().register_prometheus(shared)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        filled().register_prometheus(shared)  # the same default namespace
    MetricsCollector(namespace="shop").register_prometheus(shared)  # another one is fine
    scrape = openmetrics_latest(shared).decode()
    families = [f.name for f in openmetrics_families(scrape)]  # a valid scrape
    assert sorted(families) == sorted(set(families))
    shared.unregister(first)
    filled().register_prometheus(shared)  # its names are free again


def _otel_points(reader: InMemoryMetricReader, metric_name: str) -> dict[str, Any]:
    data = reader.get_metrics_data()
    assert data is not None
    return {
        point.attributes["name"]: point
        for resource_metrics in data.resource_metrics
        for scope in resource_metrics.scope_metrics
        for metric in scope.metrics
        if metric.name == metric_name
        for point in metric.data.data_points
    }


def test_exported_counters_never_go_down_across_reset() -> None:
    collector = MetricsCollector()
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])

    @collector.measure("held")  # reset clears it in place
    def held() -> None:
        return None

    try:
        collector.instrument_opentelemetry(provider)
        for _ in range(5):
            collector.record("manual", 0.002)  # reset drops its series
            held()
        collector.record("manual", 0.004, error=True)
        before = _otel_points(reader, "pepperpy.event.calls")
        assert (before["manual"].value, before["held"].value) == (6, 5)
        collector.reset()
        collector.record("manual", 0.010)
        held()
        assert collector.get_metrics("manual").count == 1  # snapshots start over
        after = _otel_points(reader, "pepperpy.event.calls")
        assert (after["manual"].value, after["held"].value) == (7, 6)
        assert after["manual"].start_time_unix_nano == before["manual"].start_time_unix_nano
        assert _otel_points(reader, "pepperpy.event.errors")["manual"].value == 1
        latency = _otel_points(reader, "pepperpy.event.latency")  # since the reset
        assert latency["manual"].value == pytest.approx(10, rel=0.04)

        values = samples(collector.to_prometheus())
        manual = (("name", "manual"),)
        assert values[("pepperpy_event_calls_total", manual)] == 7
        assert values[("pepperpy_event_errors_total", manual)] == 1
        assert values[("pepperpy_event_latency_seconds_count", manual)] == 7
        assert values[("pepperpy_event_latency_seconds_sum", manual)] == pytest.approx(0.024)
        median = values[("pepperpy_event_latency_seconds", (*manual, ("quantile", "0.5")))]
        assert median == pytest.approx(0.010, rel=0.04)

        collector.reset("manual")  # nothing recorded since: the totals are still exported
        assert "manual" not in collector.names()
        assert _otel_points(reader, "pepperpy.event.calls")["manual"].value == 7
        assert samples(collector.to_prometheus())[("pepperpy_event_calls_total", manual)] == 7
    finally:
        provider.shutdown()


def test_the_longest_namespace_makes_valid_opentelemetry_names() -> None:
    collector = MetricsCollector(namespace="a" * 244)
    collector.record("x", 0.001)
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    try:
        collector.instrument_opentelemetry(provider)
        assert _otel_points(reader, "a" * 244 + ".calls")["x"].value == 1
        assert _otel_points(reader, "a" * 244 + ".throughput")
    finally:
        provider.shutdown()
