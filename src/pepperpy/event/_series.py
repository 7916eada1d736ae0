"""A measured name's series (its histogram, errors and throughput ring), and snapshots.

:class:`Series` is what a collector keeps per name; :class:`MetricsSnapshot` is what
reading one name (or all, merged) gives.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from ._histogram import BUCKETS, LINEAR, SUB_BITS, LatencyHistogram

__all__ = ["SLOTS", "MetricsSnapshot", "Series"]

SLOTS = 60  # throughput window resolution: window / 60 per slot


@dataclass(frozen=True, slots=True)
class MetricsSnapshot:
    """Metrics of one measured name (or of all, when ``name`` is None) at one moment.

    Latencies are in milliseconds; ``throughput`` is calls per second over the
    collector's sliding window.
    """

    name: str | None
    count: int
    errors: int
    avg_latency: float
    p50: float
    p95: float
    p99: float
    min_latency: float
    max_latency: float
    throughput: float

    @property
    def error_rate(self) -> float:
        """Share of calls that failed (0 when nothing was measured)."""
        return self.errors / self.count if self.count else 0.0


class Series(LatencyHistogram):
    """Everything recorded under one name: its histogram, errors and throughput slots.

    The current time slot is counted in ``slot_count``; only when a call lands in a later
    slot is the finished one written to the ring (``_roll``), so the hot path does one
    comparison for throughput.
    """

    __slots__ = (
        "errors",
        "held",
        "ring_counts",
        "ring_ids",
        "slot",
        "slot_count",
        "slot_end",
        "slot_ns",
        "started",
    )

    def __init__(self, slot_ns: int) -> None:
        super().__init__()
        self.slot_ns = slot_ns
        self.held = False  # a measured function or middleware records into it directly
        self.errors = 0
        self.clear()

    def clear(self) -> tuple[int, int, int]:
        """Forget everything recorded, in place: holders of ``observe`` keep recording.

        Returns the (calls, errors, total ns) it forgot, read and zeroed together: a
        worker thread's ``observe`` is counted in them or kept, never lost between.
        """
        fresh = [0] * BUCKETS  # allocated first: an allocation may run the GC, and code
        # the GC runs may switch threads; between the first read and the last write
        # below there is no call, allocation or loop, so the GIL does not switch threads
        # there, as in observe's writes (a reset read the totals, then cleared, and a
        # call observed in between was lost)
        count = self.count
        errors = self.errors
        total = self.total
        self.counts = fresh
        self.count = 0
        self.total = 0
        self.min = 0
        self.max = 0
        self.errors = 0
        self.ring_ids = [-1] * SLOTS
        self.ring_counts = [0] * SLOTS
        self.slot = -1
        self.slot_end = 0
        self.slot_count = 0
        self.started = time.perf_counter_ns()  # when measuring started
        return count, errors, total

    def observe(self, elapsed_ns: int, end_ns: int, error: bool) -> None:
        """Record one call; the hot path of every measured call, kept flat."""
        if elapsed_ns < LINEAR:
            if elapsed_ns < 0:
                elapsed_ns = 0
            index = elapsed_ns
        else:
            shift = elapsed_ns.bit_length() - SUB_BITS
            index = (shift << 4) + (elapsed_ns >> shift)
            if index >= BUCKETS:
                index = BUCKETS - 1
        self.counts[index] += 1
        self.total += elapsed_ns
        if elapsed_ns > self.max:
            self.max = elapsed_ns
        if elapsed_ns < self.min or not self.count:
            self.min = elapsed_ns
        self.count += 1
        if error:
            self.errors += 1
        if end_ns < self.slot_end:
            self.slot_count += 1
        else:
            self._roll(end_ns)

    def _roll(self, end_ns: int) -> None:
        if end_ns < self.slot_end:
            # another thread rolled since this one's ``observe`` compared (the GIL may
            # switch threads as this call starts, not between here and the writes
            # below): rolling again would overwrite its slot and lose its count
            self.slot_count += 1
            return
        if self.slot >= 0:
            position = self.slot % SLOTS
            self.ring_ids[position] = self.slot
            self.ring_counts[position] = self.slot_count
        self.slot = end_ns // self.slot_ns
        self.slot_end = (self.slot + 1) * self.slot_ns
        self.slot_count = 1

    def throughput(self, now_ns: int) -> float:
        """Calls per second over the window ending at ``now_ns``."""
        oldest = now_ns // self.slot_ns - SLOTS + 1
        recent = sum(
            n
            for slot, n in zip(self.ring_ids, self.ring_counts, strict=True)
            if oldest <= slot != self.slot
        )
        if self.slot >= oldest:
            recent += self.slot_count
        if not recent:
            return 0.0
        start = max(self.started, oldest * self.slot_ns)
        span = max(now_ns - start, 1_000_000)  # at least 1 ms, so a first burst is finite
        return recent * 1e9 / span
