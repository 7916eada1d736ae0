"""What the soak watches besides the events: the process, the event loop, the logs, and
the faults it injects.

Nothing here takes tracemalloc snapshots: a snapshot of a big heap froze the loop for
8-35 s in an earlier soak. The process is sampled cheaply instead (RSS from
``/proc/self/statm``, open fds from ``/proc/self/fd``, the loop's task count, CPU time).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tests.faultproxy import FaultProxy

__all__ = ["FaultScheduler", "LagTicker", "LogCounter", "Sample", "Sampler", "trend"]

_PAGE = os.sysconf("SC_PAGE_SIZE")
_NUMBER = re.compile(r"\d+(\.\d+)?")
_QUOTED = re.compile(r"'[^']*'")
_HEX = re.compile(r"\b[0-9a-f]{8,}\b")


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * _PAGE / 2**20


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


class LogCounter(logging.Handler):
    """Counts WARNING and ERROR records by logger and message prefix (numbers, quoted
    names and hex ids blanked, so one kind of message is one line), keeping the first
    example of each."""

    def __init__(self, started: float) -> None:
        super().__init__(logging.WARNING)
        self.started = started
        #: run, drain or close: what the soak was doing (close-time noise is told apart)
        self.phase = "run"
        self.counts: Counter[tuple[str, str, str, str]] = Counter()
        self.examples: dict[tuple[str, str, str, str], str] = {}
        self.first_seen: dict[tuple[str, str, str, str], float] = {}

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # a broken record must not break the soak
            message = str(record.msg)
        prefix = _NUMBER.sub("N", _HEX.sub("H", _QUOTED.sub("'…'", message)))[:90]
        key = (self.phase, record.levelname, record.name, prefix)
        self.counts[key] += 1
        if key not in self.examples:
            text = message
            if record.exc_info and record.exc_info[1] is not None:
                text += f" [{type(record.exc_info[1]).__name__}: {record.exc_info[1]}]"
            self.examples[key] = text[:600]
            self.first_seen[key] = time.monotonic() - self.started

    def total(self, level: str | None = None) -> int:
        return sum(n for key, n in self.counts.items() if level is None or key[1] == level)

    def report(self) -> list[dict[str, Any]]:
        return [
            {
                "phase": phase,
                "level": level,
                "logger": logger,
                "prefix": prefix,
                "count": count,
                "first_at_s": round(self.first_seen[(phase, level, logger, prefix)], 1),
                "example": self.examples[(phase, level, logger, prefix)],
            }
            for (phase, level, logger, prefix), count in self.counts.most_common()
        ]


class LagTicker:
    """Measures how late the loop wakes a task that sleeps ``period`` seconds."""

    def __init__(self, started: float, period: float = 0.05) -> None:
        self.started = started
        self.period = period
        self.max_lag = 0.0
        self.window_max = 0.0  # since the last progress line
        self.over_100ms = 0
        self.over_1s = 0
        self.worst: list[tuple[float, float]] = []  # (lag s, at s), the 10 worst

    async def run(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(self.period)
            lag = time.monotonic() - before - self.period
            self.max_lag = max(self.max_lag, lag)
            self.window_max = max(self.window_max, lag)
            if lag > 0.1:
                self.over_100ms += 1
                self.worst = sorted([*self.worst, (lag, before - self.started)], reverse=True)
                del self.worst[10:]
            if lag > 1.0:
                self.over_1s += 1

    def take_window(self) -> float:
        value, self.window_max = self.window_max, 0.0
        return value


@dataclass
class Sample:
    at: float  # seconds since the start
    rss_mb: float
    fds: int
    tasks: int
    cpu_s: float  # process CPU seconds so far
    connections: dict[str, int] = field(default_factory=dict)  # open through each proxy set


class Sampler:
    """Every ``period`` seconds: RSS, fds, tasks, CPU, connections through the proxies."""

    def __init__(
        self,
        started: float,
        proxies: dict[str, Sequence[FaultProxy]],
        period: float = 10.0,
    ) -> None:
        self.started = started
        self.proxies = proxies
        self.period = period
        self.samples: list[Sample] = []

    def take(self) -> Sample:
        sample = Sample(
            at=time.monotonic() - self.started,
            rss_mb=rss_mb(),
            fds=open_fds(),
            tasks=len(asyncio.all_tasks()),
            cpu_s=time.process_time(),
            connections={
                name: sum(p.open_connections for p in group) for name, group in self.proxies.items()
            },
        )
        self.samples.append(sample)
        return sample

    async def run(self) -> None:
        while True:
            self.take()
            await asyncio.sleep(self.period)


def trend(samples: Sequence[Sample], window: float = 600.0) -> dict[str, Any]:
    """Mean RSS, fds and tasks over the first and the last ``window`` seconds (after a
    60-s warm-up), and the CPU share over the whole run."""
    if not samples:
        return {}
    end = samples[-1].at
    warm = [s for s in samples if s.at >= 60.0] or list(samples)
    first = [s for s in warm if s.at < warm[0].at + window]
    last = [s for s in warm if s.at > end - window]

    def mean(values: list[float]) -> float:
        return round(sum(values) / len(values), 2)

    def side(part: list[Sample]) -> dict[str, Any]:
        return {
            "from_s": round(part[0].at),
            "to_s": round(part[-1].at),
            "rss_mb": mean([s.rss_mb for s in part]),
            "fds": mean([float(s.fds) for s in part]),
            "tasks": mean([float(s.tasks) for s in part]),
        }

    span = samples[-1].at - samples[0].at
    return {
        "first": side(first),
        "last": side(last),
        "rss_mb_max": round(max(s.rss_mb for s in samples), 1),
        "fds_max": max(s.fds for s in samples),
        "tasks_max": max(s.tasks for s in samples),
        "cpu_share": round((samples[-1].cpu_s - samples[0].cpu_s) / span, 3) if span else None,
    }


@dataclass
class Fault:
    at: float
    component: str
    target: str  # "all" or the name of one proxy
    kind: str  # drop | pause | refuse
    seconds: float


class FaultScheduler:
    """Every 20-90 s (random) one component gets a fault, then heals: ``drop`` (reset
    every connection), ``pause`` (a partition of 1-15 s) or ``refuse`` (reset every
    connection and refuse new ones for 2-6 s). For components with several proxies
    (one per bus), four faults in ten hit one proxy only (one member cut off)."""

    def __init__(
        self,
        started: float,
        targets: dict[str, dict[str, FaultProxy]],
        rng: random.Random,
        on_fault: Callable[[Fault], None] | None = None,
        interval: tuple[float, float] = (20.0, 90.0),
    ) -> None:
        self.started = started
        self.targets = targets
        self.rng = rng
        self.on_fault = on_fault
        self.interval = interval
        self.faults: list[Fault] = []
        self._current: list[FaultProxy] = []

    async def run(self) -> None:
        if not self.targets:
            return
        try:
            while True:
                await asyncio.sleep(self.rng.uniform(*self.interval))
                await self._one()
        finally:
            self.heal_all()

    def heal_all(self) -> None:
        for proxies in self.targets.values():
            for proxy in proxies.values():
                proxy.resume()
                proxy.heal()

    async def _one(self) -> None:
        component = self.rng.choice(sorted(self.targets))
        proxies = self.targets[component]
        if len(proxies) > 1 and self.rng.random() < 0.4:
            target = self.rng.choice(sorted(proxies))
            chosen = [proxies[target]]
        else:
            target, chosen = "all", list(proxies.values())
        kind = self.rng.choice(["drop", "pause", "refuse"])
        seconds = 0.0
        if kind == "pause":
            seconds = round(self.rng.uniform(1.0, 15.0), 1)
        elif kind == "refuse":
            seconds = round(self.rng.uniform(2.0, 6.0), 1)
        fault = Fault(round(time.monotonic() - self.started, 1), component, target, kind, seconds)
        self.faults.append(fault)
        if self.on_fault is not None:
            self.on_fault(fault)
        for proxy in chosen:
            if kind == "pause":
                proxy.pause()
            else:
                if kind == "refuse":
                    proxy.refuse()
                proxy.drop()
        try:
            await asyncio.sleep(seconds)
        finally:
            for proxy in chosen:
                proxy.resume()
                proxy.heal()

    def summary(self) -> dict[str, Any]:
        by: Counter[str] = Counter(f"{f.component}/{f.kind}" for f in self.faults)
        return {
            "count": len(self.faults),
            "by_component_kind": dict(sorted(by.items())),
            "log": [vars(f) for f in self.faults],
        }
