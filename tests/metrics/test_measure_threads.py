"""``measure`` and ``record`` from worker threads: counts stay exact.

Thread switches are simulated where CPython's GIL may make them (as a function starts),
to show deterministically what two threads interleaving there would do.
"""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from types import FrameType
from typing import Any

import pytest

from pepperpy.event import MetricsCollector
from pepperpy.event._series import Series


def test_sync_functions_in_a_thread_pool_are_counted_exactly() -> None:
    collector = MetricsCollector(window=0.001)  # a slot every ~17 µs: many rolls
    calls, workers = 4_000, 8

    @collector.measure("pooled")
    def work(n: int) -> int:
        if n % 7 == 0:
            raise ValueError(n)
        return n

    def call(n: int) -> None:
        try:
            work(n)
        except ValueError:
            pass

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as CPython lets them
    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(call, range(calls)))
    finally:
        sys.setswitchinterval(interval)
    snapshot = collector.get_metrics("pooled")
    assert (snapshot.count, snapshot.errors) == (calls, len(range(0, calls, 7)))
    assert sum(collector.histogram("pooled").counts) == calls


def test_first_records_of_a_name_from_two_threads_land_in_one_series() -> None:
    # simulates a thread switch while the first thread creates the name's series: the
    # second thread's first record ran there, and the first thread's series replaced it
    collector = MetricsCollector()
    interleaved: list[bool] = []
    original = Series.__init__

    def init_then_switch(self: Series, slot_ns: int) -> None:
        if not interleaved:
            interleaved.append(True)
            collector.record("first", 0.001)  # "another thread"
        original(self, slot_ns)

    Series.__init__ = init_then_switch  # type: ignore[method-assign]
    try:
        collector.record("first", 0.002)
    finally:
        Series.__init__ = original  # type: ignore[method-assign]
    assert interleaved
    assert collector.get_metrics("first").count == 2


def test_two_threads_crossing_into_a_new_slot_both_count_in_throughput() -> None:
    # the GIL may switch threads as ``_roll`` starts: another thread rolls there first
    series = Series(1_000_000)
    series.started = 0
    series.observe(1, 500_000, False)  # slot 0
    interleaved: list[bool] = []

    def switch(frame: FrameType, event: str, arg: Any) -> None:
        if event == "call" and frame.f_code.co_name == "_roll" and not interleaved:
            interleaved.append(True)
            series.observe(1, 1_600_000, False)  # "another thread", also into slot 1

    previous = sys.getprofile()
    sys.setprofile(switch)
    try:
        series.observe(1, 1_500_000, False)
    finally:
        sys.setprofile(previous)
    assert interleaved
    assert series.count == 3
    # every call is in the window: 3 calls over the 2 ms since measuring started
    assert series.throughput(2_000_000) == pytest.approx(3 / 0.002)
