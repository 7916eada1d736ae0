"""The loopback fault proxy (tests/faultproxy.py) and the helpers the bus's fault tests
share: :func:`finishes` bounds an operation without hanging the test, :func:`tasks_left`
finds tasks a transport left running."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Any

from tests import faultproxy
from tests.faultproxy import FaultProxy

__all__ = ["FaultProxy", "finishes", "tasks_left"]


async def finishes(operation: Awaitable[Any], within: float) -> float:
    """Await ``operation``; return how long it took, failing the test (rather than hanging
    or cancelling it) if it takes longer than ``within`` seconds or raises
    ``CancelledError`` without having been cancelled. Its other exceptions propagate."""
    task = asyncio.ensure_future(operation)
    started = time.monotonic()
    done, _ = await asyncio.wait([task], timeout=within)
    if not done:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        raise AssertionError(f"still running after {within}s")
    if task.cancelled():
        raise AssertionError("raised CancelledError although nobody cancelled it")
    task.result()
    return time.monotonic() - started


def tasks_left(before: set[asyncio.Task[Any]]) -> list[str]:
    """Tasks running now that did not before, other than the current one and the proxy's."""
    current = asyncio.current_task()
    left = []
    for task in asyncio.all_tasks() - before:
        code = getattr(task.get_coro(), "cr_code", None)
        if task is current or task.done() or (code and code.co_filename == faultproxy.__file__):
            continue
        left.append(repr(task))
    return left
