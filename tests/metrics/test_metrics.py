"""MetricsCollector: measuring, snapshots, histograms and throughput."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pepperpy.event import LatencyHistogram, MetricsCollector, MetricsSnapshot


async def test_seed_snippet_runs_as_written(capsys: pytest.CaptureFixture[str]) -> None:
    processed: list[Any] = []

    async def process_event(event: Any) -> None:
        await asyncio.sleep(0.001)
        processed.append(event)

    # --- the seed's "Event Metrics" snippet, verbatim ---
    collector = MetricsCollector()

    @collector.measure("event_processing")
    async def handle_event(event):  # type: ignore[no-untyped-def]
        await process_event(event)

    # --- (calls added to have something to measure) ---
    for n in range(5):
        await handle_event(n)

    metrics = collector.get_metrics()
    print(f"Average latency: {metrics.avg_latency}ms")
    print(f"Events/sec: {metrics.throughput}")
    # --- end of snippet ---
    out = capsys.readouterr().out
    assert "Average latency: " in out and "Events/sec: " in out
    assert processed == [0, 1, 2, 3, 4]
    assert metrics.count == 5
    assert metrics.avg_latency >= 1.0  # each call slept at least 1 ms
    assert metrics.throughput > 0


async def test_async_and_sync_calls_are_counted_with_failures() -> None:
    collector = MetricsCollector()

    @collector.measure("async")
    async def maybe_fail_async(fail: bool) -> str:
        if fail:
            raise ValueError("no")
        return "yes"

    @collector.measure("sync")
    def maybe_fail(fail: bool) -> int:
        if fail:
            raise KeyError("no")
        return 1

    assert await maybe_fail_async(False) == "yes"
    with pytest.raises(ValueError):
        await maybe_fail_async(True)
    assert maybe_fail(False) == 1
    with pytest.raises(KeyError):
        maybe_fail(True)
    maybe_fail(False)
    assert collector.get_metrics("async").count == 2
    assert collector.get_metrics("async").errors == 1
    assert collector.get_metrics("sync").count == 3
    assert collector.get_metrics("sync").errors == 1
    total = collector.get_metrics()
    assert (total.name, total.count, total.errors) == (None, 5, 2)
    assert total.error_rate == pytest.approx(0.4)
    assert maybe_fail.__name__ == "maybe_fail"  # functools.wraps


async def test_cancellation_counts_as_a_failed_call() -> None:
    collector = MetricsCollector()

    @collector.measure("slow")
    async def slow() -> None:
        await asyncio.sleep(10)

    task = asyncio.ensure_future(slow())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert collector.get_metrics("slow").errors == 1


def test_snapshot_is_frozen_and_unknown_names_are_zero() -> None:
    collector = MetricsCollector()
    snapshot = collector.get_metrics("never")
    assert snapshot == MetricsSnapshot("never", 0, 0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        snapshot.count = 3  # type: ignore[misc]


def test_percentiles_follow_recorded_latencies() -> None:
    collector = MetricsCollector()
    for ms in range(1, 101):  # 1..100 ms
        collector.record("work", ms / 1000)
    snapshot = collector.get_metrics("work")
    assert snapshot.count == 100
    assert snapshot.avg_latency == pytest.approx(50.5, rel=1e-6)
    assert snapshot.p50 == pytest.approx(50, rel=0.04)
    assert snapshot.p95 == pytest.approx(95, rel=0.04)
    assert snapshot.p99 == pytest.approx(99, rel=0.04)
    assert snapshot.min_latency == pytest.approx(1)
    assert snapshot.max_latency == pytest.approx(100)


def test_aggregate_merges_histograms_of_every_name() -> None:
    collector = MetricsCollector()
    for _ in range(90):
        collector.record("fast", 0.001)
    for _ in range(10):
        collector.record("slow", 1.0)
    total = collector.get_metrics()
    assert total.count == 100
    assert total.p50 == pytest.approx(1, rel=0.04)
    assert total.p95 == pytest.approx(1000, rel=0.04)
    assert collector.names() == ["fast", "slow"]
    assert set(collector.snapshots()) == {"fast", "slow"}


def test_throughput_counts_recent_calls_only() -> None:
    collector = MetricsCollector(window=0.2)
    for _ in range(50):
        collector.record("burst", 0.0)
    assert collector.get_metrics("burst").throughput > 0
    import time

    time.sleep(0.25)
    assert collector.get_metrics("burst").throughput == 0
    assert collector.get_metrics("burst").count == 50


def test_throughput_of_a_steady_rate() -> None:
    import time

    collector = MetricsCollector(window=1.0)
    start = time.monotonic()
    while time.monotonic() - start < 0.3:
        collector.record("steady", 0.0)
        time.sleep(0.005)
    rate = collector.get_metrics("steady").throughput
    assert 50 < rate < 400  # about 1 per 5 ms, loosely bounded for slow CI machines


def test_reset_forgets() -> None:
    collector = MetricsCollector()
    collector.record("a", 0.1)
    collector.record("b", 0.1)
    collector.reset("a")
    assert collector.names() == ["b"]
    collector.reset()
    assert collector.get_metrics().count == 0


async def test_measured_functions_keep_counting_after_reset() -> None:
    collector = MetricsCollector()

    @collector.measure("work")
    async def work() -> None:
        await asyncio.sleep(0)

    @collector.measure("sync")
    def sync_work() -> None:
        pass

    middleware = collector.measure("chain").as_middleware()

    async def next_handler(event: Any) -> None:
        return None

    await work()
    sync_work()
    await middleware(None, next_handler)  # type: ignore[arg-type]
    collector.reset("work")
    assert collector.get_metrics("work").count == 0
    assert collector.names() == ["chain", "sync"]
    for _ in range(3):
        await work()
    assert collector.get_metrics("work").count == 3
    assert collector.names() == ["chain", "sync", "work"]
    collector.reset()
    assert collector.names() == []
    assert collector.get_metrics().count == 0
    sync_work()
    await middleware(None, next_handler)  # type: ignore[arg-type]
    assert collector.names() == ["chain", "sync"]
    assert collector.get_metrics("sync").count == 1
    assert collector.get_metrics("chain").count == 1
    assert collector.get_metrics().count == 2


async def test_an_object_with_async_call_is_measured_as_async() -> None:
    collector = MetricsCollector()

    class Sender:
        async def __call__(self, message: str) -> None:
            await asyncio.sleep(0.02)
            raise ConnectionError("down")

    send = collector.measure("send")(Sender())
    with pytest.raises(ConnectionError):
        await send("hi")
    snapshot = collector.get_metrics("send")
    assert (snapshot.count, snapshot.errors) == (1, 1)
    assert snapshot.avg_latency >= 15  # ms: the await was measured, not the coroutine creation


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        (-1.0, ValueError),
        (float("nan"), ValueError),
        (float("inf"), ValueError),
        (1e300, ValueError),
        ("1", TypeError),  # no number: a wrong type (docs/errors.md)
        (True, TypeError),
    ],
)
def test_record_rejects_bad_durations(bad: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match="seconds must be a finite number") as caught:
        MetricsCollector().record("a", bad)
    assert type(caught.value) is error


def test_bad_options_and_names_are_rejected() -> None:
    with pytest.raises(ValueError):
        MetricsCollector(window=0)
    with pytest.raises(ValueError):
        MetricsCollector(namespace="bad-name")
    for bad in ("caf\xe9", "x\xb2", "_x", "1x", ""):  # not Prometheus (or OTel) prefixes
        with pytest.raises(ValueError, match="namespace"):
            MetricsCollector(namespace=bad)
    assert MetricsCollector(namespace="shop_2").namespace == "shop_2"
    # OpenTelemetry names stop at 255 characters; the longest adds ".throughput"
    with pytest.raises(ValueError, match="at most 244 characters, got 245"):
        MetricsCollector(namespace="a" * 245)
    assert MetricsCollector(namespace="a" * 244).namespace == "a" * 244
    with pytest.raises(ValueError):
        MetricsCollector().measure("")
    with pytest.raises(TypeError):
        MetricsCollector().measure("x")(42)  # type: ignore[type-var]

    async def stream() -> Any:
        yield 1

    with pytest.raises(TypeError, match="generator"):
        MetricsCollector().measure("x")(stream)


# -- the histogram --------------------------------------------------------------------


def test_histogram_memory_is_bounded() -> None:
    histogram = LatencyHistogram()
    size = sys.getsizeof(histogram.counts)
    rng = random.Random(1)
    for _ in range(20_000):
        histogram.record(int(rng.lognormvariate(12, 3)))
    assert sys.getsizeof(histogram.counts) == size
    assert histogram.count == 20_000


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(min_value=0, max_value=10**12), min_size=1, max_size=300),
    st.sampled_from([0.5, 0.9, 0.95, 0.99, 1.0]),
)
def test_histogram_percentiles_are_within_the_bucket_error(
    values: list[int], fraction: float
) -> None:
    histogram = LatencyHistogram()
    for value in values:
        histogram.record(value)
    ordered = sorted(values)
    rank = max(1, -(-int(fraction * 1_000_000) * len(values) // 1_000_000))
    exact = ordered[min(rank, len(values)) - 1]
    estimate = histogram.percentile(fraction)
    assert abs(estimate - exact) <= max(1.0, exact * 0.0625)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.integers(min_value=0, max_value=10**10), max_size=100),
    st.lists(st.integers(min_value=0, max_value=10**10), max_size=100),
)
def test_merging_equals_recording_everything_in_one(left: list[int], right: list[int]) -> None:
    a, b, both = LatencyHistogram(), LatencyHistogram(), LatencyHistogram()
    for v in left:
        a.record(v)
        both.record(v)
    for v in right:
        b.record(v)
        both.record(v)
    merged = a.copy().merge(b)
    assert merged.counts == both.counts
    assert (merged.count, merged.total, merged.min, merged.max) == (
        both.count,
        both.total,
        both.min,
        both.max,
    )


def test_histogram_rejects_bad_fractions() -> None:
    with pytest.raises(ValueError):
        LatencyHistogram().percentile(1.5)
    assert LatencyHistogram().percentile(0.5) == 0.0
