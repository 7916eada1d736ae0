"""A tiny harness: run contenders interleaved, take medians, report ratios as Markdown.

Every benchmark module ``benchmarks/bench_<area>.py`` defines ``async def main(quick:
bool) -> str`` returning a Markdown section; ``python -m benchmarks`` runs them all and
writes ``docs/benchmarks.md``. Contenders of one comparison run in the same process,
interleaved over several passes, so machine noise hits them alike.
"""

from __future__ import annotations

import gc
import platform
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

Runner = Callable[[int], Awaitable[float]]  # runs n operations, returns seconds taken


@dataclass
class Result:
    name: str
    ops_per_sec: float


async def compare(
    contenders: dict[str, Runner], *, operations: int, passes: int = 5
) -> list[Result]:
    """Run each contender ``passes`` times, interleaved; return median ops/s for each."""
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(passes):
        for name, run in contenders.items():
            gc.collect()
            seconds = await run(operations)
            samples[name].append(operations / seconds)
    return [Result(name, statistics.median(values)) for name, values in samples.items()]


def table(results: list[Result], *, baseline: str, unit: str = "ops/s") -> str:
    """A Markdown table with each contender's rate and its ratio to ``baseline``."""
    base = next(r.ops_per_sec for r in results if r.name == baseline)
    lines = [f"| contender | {unit} (median) | ratio to {baseline} |", "|---|---:|---:|"]
    for r in results:
        lines.append(f"| {r.name} | {r.ops_per_sec:,.0f} | {r.ops_per_sec / base:.2f}x |")
    return "\n".join(lines)


def machine() -> str:
    """One line describing the machine and interpreter (and which make_event ran)."""
    import os

    from pepperpy.event import _event

    built = "in C" if _event.make_event is not _event._make_event_py else "in Python"
    return (
        f"{platform.python_implementation()} {platform.python_version()}, "
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, "
        f"make_event {built}, measured {time.strftime('%Y-%m-%d')}"
    )
