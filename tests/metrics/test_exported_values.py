"""Every exported value, read back by prometheus_client's parser and OpenTelemetry's SDK,
agrees with ``get_metrics`` for any name (measured names are label values, never part of
a metric name, so nothing is sanitised and no two names can collide)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from prometheus_client.parser import text_string_to_metric_families

from pepperpy.event import MetricsCollector, _metrics, _series

NOW = 10**15  # ns: a frozen clock, so throughput reads the same for every exporter

TRICKY = [
    "orders.created",
    "orders_created",  # what "orders.created" would sanitise to
    "orders-created",
    "1st",
    "caf\xe9 \u2603 \U0001f600",
    'say "hi"',
    "line\nbreak",
    "line\\nbreak",  # a backslash then n: must not read back as the one above
    "back\\slash\\",
    "carriage\rreturn",
    "tab\there",
    "nul\x00byte",
    "\u2028\x85",
    '{label="x"} 1',
    "# HELP",
]

names = st.text(min_size=1, max_size=20)
calls = st.lists(st.tuples(st.integers(0, 10**10), st.booleans()), min_size=1, max_size=30)


@contextmanager
def frozen_clock() -> Iterator[None]:
    clock = SimpleNamespace(perf_counter_ns=lambda: NOW)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_metrics, "time", clock)
        patch.setattr(_series, "time", clock)
        yield


def fill(recorded: dict[str, list[tuple[int, bool]]]) -> MetricsCollector:
    collector = MetricsCollector()
    for name, durations in recorded.items():
        for ns, error in durations:
            collector.record(name, ns / 1e9, error=error)
    return collector


def check_prometheus(collector: MetricsCollector) -> None:
    text = collector.to_prometheus()
    families = list(text_string_to_metric_families(text))
    assert [(f.name, f.type) for f in families] == [
        ("pepperpy_event_calls", "counter"),
        ("pepperpy_event_errors", "counter"),
        ("pepperpy_event_latency_seconds", "summary"),
        ("pepperpy_event_throughput", "gauge"),
    ]
    assert all(f.documentation for f in families)
    values: dict[tuple[str, str, str | None], float] = {}
    for family in families:
        for sample in family.samples:
            key = (sample.name, sample.labels["name"], sample.labels.get("quantile"))
            assert key not in values, f"duplicate series {key}"
            assert set(sample.labels) <= {"name", "quantile"}
            values[key] = sample.value
    snapshots = collector.snapshots()
    ns = "pepperpy_event"
    expected: dict[tuple[str, str, str | None], float] = {}
    for name, snap in snapshots.items():
        expected[(f"{ns}_calls_total", name, None)] = snap.count
        expected[(f"{ns}_errors_total", name, None)] = snap.errors
        for quantile, value in (("0.5", snap.p50), ("0.95", snap.p95), ("0.99", snap.p99)):
            expected[(f"{ns}_latency_seconds", name, quantile)] = value / 1000
        expected[(f"{ns}_latency_seconds_count", name, None)] = snap.count
        expected[(f"{ns}_latency_seconds_sum", name, None)] = snap.avg_latency * snap.count / 1000
        expected[(f"{ns}_throughput", name, None)] = snap.throughput
    assert values.keys() == expected.keys()
    for key, value in expected.items():
        assert values[key] == pytest.approx(value, rel=1e-9, abs=1e-15), key


def otel_points(reader: InMemoryMetricReader) -> dict[tuple[str, str, str | None], float]:
    data = reader.get_metrics_data()
    assert data is not None
    points: dict[tuple[str, str, str | None], float] = {}
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    number: Any = point  # observable counters and gauges: NumberDataPoints
                    attributes = number.attributes
                    quantile = attributes.get("quantile")
                    points[(metric.name, attributes["name"], quantile)] = number.value
    return points


def check_opentelemetry(collector: MetricsCollector) -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    try:
        collector.instrument_opentelemetry(provider)
        points = otel_points(reader)
    finally:
        provider.shutdown()
    expected: dict[tuple[str, str, str | None], float] = {}
    for name, snap in collector.snapshots().items():
        expected[("pepperpy.event.calls", name, None)] = snap.count
        expected[("pepperpy.event.errors", name, None)] = snap.errors
        for label, value in (
            ("avg", snap.avg_latency),
            ("p50", snap.p50),
            ("p95", snap.p95),
            ("p99", snap.p99),
        ):
            expected[("pepperpy.event.latency", name, label)] = value
        expected[("pepperpy.event.throughput", name, None)] = snap.throughput
    assert points == expected


def test_tricky_names_export_as_themselves_with_every_value() -> None:
    with frozen_clock():
        collector = fill(
            {
                name: [(n * 1_000_003, n % 3 == 0) for n in range(1, 2 + i)]
                for i, name in enumerate(TRICKY)
            }
        )
        assert collector.names() == sorted(TRICKY)
        check_prometheus(collector)
        check_opentelemetry(collector)


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(names, calls, min_size=1, max_size=6))
def test_any_names_export_values_that_agree_with_get_metrics(
    recorded: dict[str, list[tuple[int, bool]]],
) -> None:
    with frozen_clock():
        collector = fill(recorded)
        check_prometheus(collector)
        check_opentelemetry(collector)


def test_a_name_reset_since_exports_nan_quantiles_and_carried_counters() -> None:
    collector = fill({"gone": [(1_000, False), (2_000, True)]})
    collector.reset("gone")
    families = {f.name: f for f in text_string_to_metric_families(collector.to_prometheus())}
    summary = families["pepperpy_event_latency_seconds"].samples
    quantiles = [s.value for s in summary if "quantile" in s.labels]
    assert len(quantiles) == 3 and all(math.isnan(q) for q in quantiles)
    by_name = {s.name: s.value for s in summary if "quantile" not in s.labels}
    assert by_name == {
        "pepperpy_event_latency_seconds_sum": pytest.approx(3e-6),
        "pepperpy_event_latency_seconds_count": 2,
    }
    assert families["pepperpy_event_errors"].samples[0].value == 1
