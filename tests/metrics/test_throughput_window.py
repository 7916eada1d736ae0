"""Throughput over the sliding window, on a clock this test controls: gaps, idle periods,
and memory that stays the same however many calls and slots go by."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pepperpy.event import MetricsCollector, _metrics, _series
from pepperpy.event._histogram import BUCKETS
from pepperpy.event._series import SLOTS, Series

SLOT = 1_000_000  # ns


def expected_throughput(started: int, ends: list[int], now: int, slot: int) -> float:
    """What the docs describe: calls in the window's slots over the time they cover (or
    since measuring started, if later; at least 1 ms)."""
    oldest = now // slot - SLOTS + 1
    recent = sum(1 for end in ends if end // slot >= oldest)
    if not recent:
        return 0.0
    return recent * 1e9 / max(now - max(started, oldest * slot), 1_000_000)


@settings(max_examples=300, deadline=None)
@given(
    st.integers(0, 10**9),
    st.lists(st.integers(0, 5 * SLOT), min_size=1, max_size=200),
    st.lists(st.integers(0, 200 * SLOT), min_size=1, max_size=5),
)
def test_throughput_matches_the_window_model_whatever_the_gaps(
    started: int, gaps: list[int], reads: list[int]
) -> None:
    series = Series(SLOT)
    series.started = started
    ends: list[int] = []
    now = started
    for gap in gaps:
        now += gap
        series.observe(1, now, False)
        ends.append(now)
    for wait in reads:  # reads after idle periods of any length, the clock going on
        now += wait
        assert series.throughput(now) == pytest.approx(
            expected_throughput(started, ends, now, SLOT), rel=1e-12
        )


class Clock:
    def __init__(self) -> None:
        self.ns = 10**12

    def perf_counter_ns(self) -> int:
        return self.ns


@contextmanager
def controlled(clock: Clock) -> Iterator[None]:
    fake = SimpleNamespace(perf_counter_ns=clock.perf_counter_ns)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_metrics, "time", fake)
        patch.setattr(_series, "time", fake)
        yield


def test_a_steady_rate_an_idle_hour_and_a_restart() -> None:
    clock = Clock()
    with controlled(clock):
        collector = MetricsCollector(window=60.0)  # 1 s slots
        collector.record("steady", 0.001)  # the series starts here
        for _ in range(299):  # one call every half second for ~2.5 minutes
            clock.ns += 500_000_000
            collector.record("steady", 0.001)
        assert collector.get_metrics("steady").throughput == pytest.approx(2.0, rel=0.02)
        clock.ns += 3600 * 10**9  # an hour without calls
        assert collector.get_metrics("steady").throughput == 0.0
        collector.record("steady", 0.001)
        clock.ns += 10**9
        # one call in the last window: over the whole window, not the second since it
        assert collector.get_metrics("steady").throughput == pytest.approx(1 / 60, rel=0.02)
        assert collector.get_metrics("steady").count == 301


def test_memory_stays_the_same_over_a_million_calls_and_many_slots() -> None:
    series = Series(SLOT)
    sizes = (
        sys.getsizeof(series.counts),
        sys.getsizeof(series.ring_ids),
        sys.getsizeof(series.ring_counts),
    )
    end = 0
    for n in range(1_000_000):
        end += 1 + (n % 7) * 50_000  # ~150 µs apart: about 150,000 slots go by
        series.observe(n % 4096, end, False)
    assert series.count == 1_000_000
    assert (len(series.counts), len(series.ring_ids), len(series.ring_counts)) == (
        BUCKETS,
        SLOTS,
        SLOTS,
    )
    assert sizes == (
        sys.getsizeof(series.counts),
        sys.getsizeof(series.ring_ids),
        sys.getsizeof(series.ring_counts),
    )
