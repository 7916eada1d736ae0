"""What the three broker benchmarks share: a contender that publishes and counts deliveries.

A subclass connects and subscribes in ``setup`` (not timed), publishes one event and
waits for the broker's acceptance in ``send``, and calls ``seen()`` from its handler.
``run`` measures throughput with ``WINDOW`` publishes in flight, ``latency`` one event
at a time; both time until the handler has seen every event.
"""

from __future__ import annotations

import abc
import asyncio
import statistics
import time
from collections.abc import Sequence

from pepperpy.event import EventBus, RetryPolicy
from pepperpy.event.transports.base import Transport

WINDOW = 100  # publishes in flight at once


class BusContender(abc.ABC):
    """Something that publishes to a broker and counts what its subscriber handled."""

    name = ""

    def __init__(self, grouped: bool) -> None:
        self.grouped = grouped
        self.handled = 0
        #: this process's CPU seconds per event, per timed run (the broker's excluded)
        self.cpu_per_event: list[float] = []
        self.waiter: asyncio.Future[None] | None = None
        self.target = 0

    def seen(self) -> None:
        self.handled += 1
        if self.handled >= self.target and self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    @abc.abstractmethod
    async def setup(self) -> None:
        """Connect, declare, subscribe (not timed)."""

    @abc.abstractmethod
    async def teardown(self) -> None:
        """Disconnect and delete what setup created."""

    @abc.abstractmethod
    async def send(self, n: int) -> None:
        """Publish event number ``n`` and wait until the broker accepted it."""

    async def run(self, count: int) -> float:
        """Publish ``count`` events, WINDOW at a time; seconds until all were handled."""
        self.waiter = asyncio.get_running_loop().create_future()
        self.target = self.handled + count
        cpu = time.process_time()
        started = time.perf_counter()
        for first in range(0, count, WINDOW):
            await asyncio.gather(*(self.send(n) for n in range(first, min(count, first + WINDOW))))
        await asyncio.wait_for(self.waiter, 60)
        elapsed = time.perf_counter() - started
        self.cpu_per_event.append((time.process_time() - cpu) / count)
        return elapsed

    async def latency(self, samples: int) -> list[float]:
        """Seconds from publish to handler, one event at a time."""
        out: list[float] = []
        for n in range(samples):
            self.waiter = asyncio.get_running_loop().create_future()
            self.target = self.handled + 1
            started = time.perf_counter()
            await self.send(n)
            await asyncio.wait_for(self.waiter, 10)
            out.append(time.perf_counter() - started)
        return out


LatencyRow = tuple[str, float, float]  # contender, median ms, p99 ms


async def interleaved_latency(contenders: Sequence[BusContender], samples: int) -> list[LatencyRow]:
    """Warm each contender up, then take ``samples`` latencies in 5 interleaved passes."""
    gathered: dict[str, list[float]] = {c.name: [] for c in contenders}
    for contender in contenders:
        await contender.latency(20)
    for _ in range(5):
        for contender in contenders:
            gathered[contender.name] += await contender.latency(samples // 5)
    rows = []
    for name, values in gathered.items():
        values.sort()
        p99 = values[min(len(values) - 1, int(len(values) * 0.99))]
        rows.append((name, statistics.median(values) * 1e3, p99 * 1e3))
    return rows


def latency_table(rows: Sequence[LatencyRow]) -> list[str]:
    """Markdown lines for :func:`interleaved_latency`'s rows."""
    return [
        "| contender | median ms | p99 ms |",
        "|---|---:|---:|",
        *(f"| {name} | {median:.3f} | {p99:.3f} |" for name, median, p99 in rows),
    ]


async def start_bus(contender: BusContender, transport: Transport) -> EventBus:
    """Our EventBus on ``transport``, subscribed to ``bench.#`` and counting for ``contender``."""
    bus = EventBus(transport=transport, retry_policy=RetryPolicy.NONE)
    group = "bench" if contender.grouped else None
    bus.subscribe("bench.#", group=group)(lambda event: contender.seen())
    await bus.start()
    return bus
