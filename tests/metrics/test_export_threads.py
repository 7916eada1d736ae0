"""Exporters read a collector from other threads while its loop thread adds and resets names.

``prometheus_client.start_http_server`` serves scrapes from its own thread and
OpenTelemetry's ``PeriodicExportingMetricReader`` collects in its own thread, while the
event loop's thread creates series (a first ``record``) and ``reset()`` removes them.
"""

from __future__ import annotations

import logging
import sys
import threading

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from pepperpy.event import MetricsCollector

NAMES = 2000  # names recorded, then reset (all of them go away: none is held)
ROUNDS = 400  # at most this many record/reset rounds; the recorder stops once scrapes end
SCRAPES = 8  # each one: a Prometheus scrape and an OpenTelemetry collection


def otel_calls(reader: InMemoryMetricReader) -> float:
    """The sum, over names, of the ``calls`` counter in one OpenTelemetry collection."""
    data = reader.get_metrics_data()
    total = 0.0
    if data is None:
        return total
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == "pepperpy.event.calls":
                    total += sum(point.value for point in metric.data.data_points)
    return total


def prometheus_calls(text: bytes) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(text.decode())
        for sample in family.samples
        if sample.name == "pepperpy_event_calls_total"
    )


def test_scrapes_on_other_threads_survive_names_coming_and_going(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="opentelemetry")
    collector = MetricsCollector()
    registry = CollectorRegistry()
    collector.register_prometheus(registry)
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    instruments = collector.instrument_opentelemetry(provider)
    names_made = threading.Event()
    scrapes_done = threading.Event()
    recorded = 0
    recorder_errors: list[BaseException] = []

    def loop_thread() -> None:  # what the event loop's thread does to the collector
        nonlocal recorded
        try:
            for _ in range(ROUNDS):
                for i in range(NAMES):
                    collector.record(f"n{i}", 0.001)
                    recorded += 1
                names_made.set()
                collector.reset()  # every name goes away, its calls carried on
                if scrapes_done.is_set():
                    return
        except BaseException as exc:  # reported by the test, not lost in the thread
            recorder_errors.append(exc)

    failures: list[str] = []
    otel_totals: list[float] = []
    old_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads often, so scrapes meet the changes
    try:
        thread = threading.Thread(target=loop_thread)
        thread.start()
        try:
            names_made.wait()  # the recorder runs: scrapes meet its names and resets
            for _ in range(SCRAPES):
                try:
                    generate_latest(registry)
                except RuntimeError as exc:
                    failures.append(f"prometheus: {exc!r}")
                otel_totals.append(otel_calls(reader))
        finally:
            scrapes_done.set()
            thread.join()
    finally:
        sys.setswitchinterval(old_interval)
    callback_failures = [r.getMessage() for r in caplog.records if "Callback failed" in r.message]
    try:
        assert not recorder_errors
        assert failures == []
        assert callback_failures == []
        # exported counters never go down, also across a reset racing a collection
        assert otel_totals == sorted(otel_totals)
        # once quiet, every call recorded is exported (carried over the resets)
        assert recorded >= NAMES
        assert prometheus_calls(generate_latest(registry)) == recorded
        assert otel_calls(reader) == recorded
    finally:
        instruments.close()
        provider.shutdown()
