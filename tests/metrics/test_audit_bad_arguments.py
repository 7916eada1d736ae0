"""Arguments of the wrong kind fail with an error naming the argument, not deep inside."""

from __future__ import annotations

from typing import Any

import pytest

from pepperpy.event import LatencyHistogram, MetricsCollector


@pytest.mark.parametrize(
    "seconds", [pytest.param(10**400, id="10**400"), pytest.param(2**1024, id="2**1024")]
)
def test_an_int_duration_past_the_float_range_is_refused_as_too_long(seconds: int) -> None:
    # math.isfinite(10**400) raised OverflowError ("int too large to convert to float")
    collector = MetricsCollector()
    with pytest.raises(ValueError, match=r"seconds must be a finite number from 0 to"):
        collector.record("orders", seconds)
    assert collector.names() == []


@pytest.mark.parametrize("fraction", ["0.95", None, b"1", [0.5]])
def test_a_percentile_of_something_that_is_no_number_names_the_fraction(fraction: Any) -> None:
    histogram = LatencyHistogram()
    histogram.record(1000)
    with pytest.raises(TypeError, match=r"fraction must be a number within \[0, 1\], got"):
        histogram.percentile(fraction)


def test_numbers_of_other_types_still_give_percentiles() -> None:
    from decimal import Decimal
    from fractions import Fraction

    histogram = LatencyHistogram()
    for value in range(1, 101):
        histogram.record(value * 1000)
    expected = histogram.percentile(0.5)
    assert histogram.percentile(Fraction(1, 2)) == expected
    assert histogram.percentile(Decimal("0.5")) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("other", [5, None, {"count": 1}])
def test_merging_something_that_is_no_histogram_is_a_type_error(other: Any) -> None:
    histogram = LatencyHistogram()
    histogram.record(10)
    with pytest.raises(TypeError, match=r"merge\(\) takes a LatencyHistogram, got"):
        histogram.merge(other)
    assert histogram.count == 1


@pytest.mark.parametrize("registry", ["registry", 5])
def test_register_prometheus_on_something_that_is_no_registry(registry: Any) -> None:
    pytest.importorskip("prometheus_client")
    collector = MetricsCollector()
    with pytest.raises(TypeError, match=r"registry must be a prometheus_client CollectorRegistry"):
        collector.register_prometheus(registry)


def test_instrument_opentelemetry_with_something_that_is_no_meter_provider() -> None:
    pytest.importorskip("opentelemetry.metrics")
    collector = MetricsCollector()
    with pytest.raises(TypeError, match=r"meter_provider must be an OpenTelemetry MeterProvider"):
        collector.instrument_opentelemetry("provider")


@pytest.mark.parametrize("collector", ["orders", None])
def test_measure_middleware_without_a_collector_names_what_it_takes(collector: Any) -> None:
    from pepperpy.event import MeasureMiddleware

    with pytest.raises(TypeError, match=r"MeasureMiddleware takes a MetricsCollector first, got"):
        MeasureMiddleware(collector)
