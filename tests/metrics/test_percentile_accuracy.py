"""Snapshot percentiles against exact ones, computed here, within the documented bound.

docs/metrics.md: a percentile is the nearest-rank one (the ``ceil(q * n)``-th smallest
duration), reported within 1/32 (3.125%) of it, to the nanosecond.
"""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pepperpy.event import LatencyHistogram, MetricsCollector

QUANTILES = {"p50": Fraction(50, 100), "p95": Fraction(95, 100), "p99": Fraction(99, 100)}
NS_PER_MS = 1_000_000

#: durations in seconds: 0, sub-microsecond (whole nanoseconds, as a clock gives them),
#: milliseconds and hours
durations = st.one_of(
    st.just(0.0),
    st.integers(min_value=1, max_value=999).map(lambda ns: ns / 1e9),
    st.floats(min_value=1e-6, max_value=10.0),
    st.floats(min_value=3600.0, max_value=5 * 3600.0),
)


def exact_ns(seconds: list[float], quantile: Fraction) -> int:
    """The nearest-rank percentile of ``seconds``, in whole nanoseconds."""
    ordered = sorted(round(s * 1e9) for s in seconds)
    rank = max(1, math.ceil(quantile * len(ordered)))
    return ordered[rank - 1]


def assert_within_bound(reported_ms: float, exact: int) -> None:
    # the bound, plus the float rounding of nanoseconds to milliseconds
    assert abs(reported_ms * NS_PER_MS - exact) <= exact / 32 + 1e-6 * max(exact, 1)


@settings(max_examples=150, deadline=None)
@given(st.lists(durations, min_size=1, max_size=400))
def test_percentiles_are_within_the_documented_bound_of_the_exact_ones(
    seconds: list[float],
) -> None:
    collector = MetricsCollector()
    for value in seconds:
        collector.record("work", value)
    snapshot = collector.get_metrics("work")
    assert snapshot.count == len(seconds)
    for field, quantile in QUANTILES.items():
        assert_within_bound(getattr(snapshot, field), exact_ns(seconds, quantile))
    recorded = [round(s * 1e9) for s in seconds]
    assert snapshot.min_latency * NS_PER_MS == pytest.approx(min(recorded), rel=1e-12, abs=1e-6)
    assert snapshot.max_latency * NS_PER_MS == pytest.approx(max(recorded), rel=1e-12)
    assert snapshot.avg_latency * NS_PER_MS == pytest.approx(sum(recorded) / len(recorded))


@settings(max_examples=100, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["a", "b", "c", "d"]),
        st.lists(durations, min_size=1, max_size=100),
        min_size=1,
    )
)
def test_the_aggregate_is_the_percentile_of_all_calls_not_an_average_of_percentiles(
    by_name: dict[str, list[float]],
) -> None:
    collector = MetricsCollector()
    for name, seconds in by_name.items():
        for value in seconds:
            collector.record(name, value)
    everything = [value for seconds in by_name.values() for value in seconds]
    total = collector.get_metrics()
    assert (total.name, total.count) == (None, len(everything))
    for field, quantile in QUANTILES.items():
        assert_within_bound(getattr(total, field), exact_ns(everything, quantile))


def test_the_aggregate_of_a_fast_and_a_slow_name_is_not_their_average() -> None:
    collector = MetricsCollector()
    for _ in range(99):
        collector.record("fast", 0.001)
    collector.record("slow", 10.0)
    total = collector.get_metrics()
    # the average of the two names' medians would be ~5000 ms
    assert total.p50 == pytest.approx(1.0, rel=1 / 32)
    assert total.p99 == pytest.approx(1.0, rel=1 / 32)
    assert total.max_latency == pytest.approx(10_000.0)


@pytest.mark.parametrize(
    ("seconds", "ns"),
    [
        (0.0, 0),
        (1.5e-08, 15),
        (3e-08, 30),
        (6.3e-08, 63),
        (2.45e-07, 245),
        (7 * 3600.0, 7 * 3600 * 10**9),
    ],
)
def test_a_single_sample_is_every_percentile_exactly(seconds: float, ns: int) -> None:
    # 1.5e-08 * 1e9 is 14.999999999999998: truncated, it was recorded as 14 ns (-6.7%)
    collector = MetricsCollector()
    collector.record("once", seconds)
    snapshot = collector.get_metrics("once")
    for value in (snapshot.p50, snapshot.p95, snapshot.p99, snapshot.avg_latency):
        assert value * NS_PER_MS == pytest.approx(ns, rel=1e-12, abs=1e-6)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), -1e-9])
def test_a_broken_clock_duration_is_refused_and_records_nothing(bad: float) -> None:
    collector = MetricsCollector()
    with pytest.raises(ValueError, match="seconds must be a finite number"):
        collector.record("clock", bad)
    assert collector.get_metrics("clock").count == 0
    assert collector.names() == []


def test_any_percent_of_exact_durations_is_the_nearest_rank_one() -> None:
    # below 32 ns every duration has its own bucket: percentiles are exact, so the rank
    # shows; 0.07 * 100 is 7.000000000000001 in floats, which ranked the 8th of 100
    histogram = LatencyHistogram()
    for _ in range(4):
        for ns in range(1, 26):  # 100 durations: 1..25 ns, four times each
            histogram.record(ns)
    ordered = sorted(ns for _ in range(4) for ns in range(1, 26))
    for percent in range(0, 101):
        rank = max(1, math.ceil(Fraction(percent, 100) * len(ordered)))
        assert histogram.percentile(percent / 100) == ordered[rank - 1], percent
