"""What ``close()`` of :class:`~._replay.EventReplay` and :class:`~._projection.Projection`
waits for: the runs (replays, ``run()``, ``rebuild()`` and ``follow()`` calls) under way
on its own event loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

__all__ = ["run_in", "wait_for_runs_here"]


@contextlib.contextmanager
def run_in(runs: set[asyncio.Task[Any]]) -> Iterator[None]:
    """Count the current task in ``runs`` while the block runs (what ``close()`` waits
    for with :func:`wait_for_runs_here`)."""
    task = asyncio.current_task()
    if task is None or task in runs:  # counted already, by a block around this one
        yield
        return
    runs.add(task)
    try:
        yield
    finally:
        runs.discard(task)


async def wait_for_runs_here(runs: Iterable[asyncio.Task[Any]]) -> None:
    """Wait until every task of ``runs`` on the running loop has ended.

    Not the current task (``close()`` called from a handler of one of them would wait
    for itself), nor those of other loops (they cannot be awaited here; they stop by
    themselves, having seen the close). ``runs`` is read once, as it is when called.
    """
    loop = asyncio.get_running_loop()
    current = asyncio.current_task()
    here = [task for task in runs if task is not current and task.get_loop() is loop]
    if here:
        await asyncio.wait(here)
