"""What ``close()`` of :class:`~._replay.EventReplay` and :class:`~._projection.Projection`
waits for: the runs (replays, ``follow()`` calls) under way on its own event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

__all__ = ["wait_for_runs_here"]


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
