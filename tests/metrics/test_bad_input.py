"""Bad input to the metrics API fails at once with an error naming what was wrong."""

from __future__ import annotations

import math

import pytest

from pepperpy.event import LatencyHistogram, MetricsCollector


@pytest.mark.parametrize(
    "window", [math.nan, math.inf, -math.inf, 1e300, pytest.param(10**400, id="10**400"), 0, -1.0]
)
def test_a_window_that_is_not_a_finite_positive_duration_is_refused(window: float) -> None:
    with pytest.raises(ValueError, match=r"window must be a finite number of seconds"):
        MetricsCollector(window=window)


def test_the_longest_window_is_a_year() -> None:
    year = 365 * 24 * 3600.0
    assert MetricsCollector(window=year).window == year
    with pytest.raises(ValueError, match=r"at most 1 year.*got 31536001"):
        MetricsCollector(window=year + 1)


def test_a_histogram_takes_a_float_duration_truncated_to_whole_nanoseconds() -> None:
    histogram = LatencyHistogram()
    histogram.record(1500.9)  # e.g. (perf_counter() - start) * 1e9
    histogram.record(15.0)
    assert histogram.count == 2
    assert (histogram.min, histogram.max, histogram.total) == (15, 1500, 1515)
    assert isinstance(histogram.min, int) and isinstance(histogram.total, int)
    assert histogram.percentile(1.0) == 1500.0


@pytest.mark.parametrize("value", ["10", None, True, b"1", 1 + 0j])
def test_a_histogram_refuses_a_duration_that_is_not_a_number(value: object) -> None:
    histogram = LatencyHistogram()
    with pytest.raises(TypeError, match=r"nanoseconds must be an int or a finite float, got"):
        histogram.record(value)  # type: ignore[arg-type]
    assert histogram.count == 0


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_a_histogram_refuses_a_float_duration_that_is_not_finite(value: float) -> None:
    histogram = LatencyHistogram()
    with pytest.raises(ValueError, match=r"nanoseconds must be finite, got"):
        histogram.record(value)
    assert histogram.count == 0


@pytest.mark.parametrize("name", ["bad\udcff", "\ud800"])
def test_a_name_with_a_lone_surrogate_is_refused_before_it_breaks_every_scrape(
    name: str,
) -> None:
    """A name that cannot be written as UTF-8 (a lone surrogate, as ``surrogateescape``
    leaves in decoded file names) made every Prometheus scrape of the collector fail with
    a UnicodeEncodeError, every other name's metrics with it."""
    prometheus_client = pytest.importorskip("prometheus_client")
    collector = MetricsCollector()
    collector.record("ok", 0.001)
    with pytest.raises(ValueError, match="surrogate"):
        collector.record(name, 0.001)
    with pytest.raises(ValueError, match="surrogate"):
        collector.measure(name)
    assert collector.names() == ["ok"]
    registry = prometheus_client.CollectorRegistry()
    collector.register_prometheus(registry)
    assert b'pepperpy_event_calls_total{name="ok"} 1.0' in prometheus_client.generate_latest(
        registry
    )
