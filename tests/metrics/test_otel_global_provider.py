"""Instruments on OpenTelemetry's global meter provider, made before the application set
one (its proxy), as a module instrumenting at import time does.

The proxy makes new instruments at every call; once a provider is set, the first
callbacks made under a name are the only ones it calls. So a second collector with the
namespace was accepted and never reported, and a collector instrumented again after
``close()`` reported nothing at all. Each scenario runs in a process of its own: the
global provider can be set once per process.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("opentelemetry.sdk.metrics")

PRELUDE = """
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from pepperpy.event import ConfigurationError, MetricsCollector


def collector(name):
    made = MetricsCollector()
    made.record(name, 0.001)
    return made


def set_provider():
    reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    return reader


def reported(reader):
    data = reader.get_metrics_data()
    names = set()
    for rm in data.resource_metrics if data else []:
        for scope in rm.scope_metrics:
            for metric in scope.metrics:
                if metric.name == "pepperpy.event.calls":
                    names |= {point.attributes["name"] for point in metric.data.data_points}
    print("reported", sorted(names))
"""


def run(script: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_one_collector_instrumented_before_the_provider_is_set_reports() -> None:
    out = run("""
        first = collector("orders")
        first.instrument_opentelemetry()
        reported(set_provider())
    """)
    assert out == "reported ['orders']\n"


def test_a_second_collector_with_the_namespace_is_refused_before_the_provider_is_set() -> None:
    out = run("""
        first = collector("orders")
        first.instrument_opentelemetry()
        try:
            collector("payments").instrument_opentelemetry()
        except ConfigurationError as exc:
            print("refused", "reported already" in str(exc))
        reported(set_provider())
    """)
    assert out == "refused True\nreported ['orders']\n"


def test_a_second_collector_with_the_namespace_is_refused_once_the_provider_is_set() -> None:
    out = run("""
        first = collector("orders")
        first.instrument_opentelemetry()
        reader = set_provider()
        try:
            collector("payments").instrument_opentelemetry()
        except ConfigurationError:
            print("refused")
        try:
            collector("refunds").instrument_opentelemetry(metrics.get_meter_provider())
        except ConfigurationError:
            print("refused")
        reported(reader)
    """)
    assert out == "refused\nrefused\nreported ['orders']\n"


def test_a_collector_instrumented_again_after_close_reports_again() -> None:
    out = run("""
        first = collector("orders")
        first.instrument_opentelemetry().close()
        again = first.instrument_opentelemetry()
        print("same", first.instrument_opentelemetry() is again)
        reader = set_provider()
        reported(reader)
        again.close()
        reported(reader)
        first.record("later", 0.001)
        first.instrument_opentelemetry()
        reported(reader)
    """)
    assert out == ("same True\nreported ['orders']\nreported []\nreported ['later', 'orders']\n")


def test_a_closed_collector_is_freed_though_it_was_instrumented_twice() -> None:
    # the proxy keeps every call's callbacks: the second call's, which lost to the first
    # handle, held the collector for the life of the process
    out = run("""
        import gc
        import weakref

        first = collector("orders")
        handle = first.instrument_opentelemetry()
        assert first.instrument_opentelemetry() is handle
        handle.close()
        gone = weakref.ref(first)
        del first
        gc.collect()
        print("freed", gone() is None)
    """)
    assert out == "freed True\n"


def test_another_collector_takes_a_closed_one_over_while_no_provider_is_set() -> None:
    # an application made twice in one process (its tests) before any provider is set:
    # nothing was reported yet, so no counter can go back
    out = run("""
        first = collector("orders")
        first.instrument_opentelemetry().close()
        second = collector("payments")
        second.instrument_opentelemetry()
        try:
            collector("refunds").instrument_opentelemetry()  # second's handle is open
        except ConfigurationError:
            print("refused")
        reported(set_provider())
    """)
    assert out == "refused\nreported ['payments']\n"


def test_once_a_provider_is_set_a_closed_collector_is_not_taken_over() -> None:
    out = run("""
        first = collector("orders")
        handle = first.instrument_opentelemetry()
        reader = set_provider()
        reported(reader)
        handle.close()
        try:
            collector("payments").instrument_opentelemetry()
        except ConfigurationError:
            print("refused")
    """)
    assert out == "reported ['orders']\nrefused\n"
