"""Idle subscriptions of a SQLite store share one read of the head a poll.

Other processes' commits wake nobody in this one, so an idle subscription polls. Each
read a page of the log every poll (0.5 s): 400 idle console tails read 800 pages a
second, 17% of a core (audit 8). Now one read of the head a poll serves them all, and
only when it shows news do they read; another process's commit still reaches each.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pepperpy.event import Event, EventStore
from pepperpy.event.store import sqlite as sqlite_module

SUBSCRIBERS = 20


def _count_reads(backend: Any) -> list[int]:
    """Count ``backend``'s page reads of the global log (calls of ``read_all``)."""
    calls = [0]
    original: Callable[..., Any] = backend.read_all

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return original(*args, **kwargs)

    backend.read_all = counting
    return calls


async def _follow(store: EventStore, seen: list[Event], count: int) -> None:
    async for event in store.subscribe(0):
        seen.append(event)
        if len(seen) == count:
            return


async def test_idle_subscriptions_read_no_pages_and_see_another_writers_commit(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path}/events.db"
    async with EventStore(url) as store, EventStore(url) as other:
        await store.append("order.1", Event("order.placed", {}))
        reads = _count_reads(store._backend)
        probes = [0]
        head = sqlite_module._head

        def counted_head(connection: Any) -> int | None:
            probes[0] += 1
            return head(connection)

        sqlite_module._head = counted_head  # type: ignore[assignment]
        seen: list[list[Event]] = [[] for _ in range(SUBSCRIBERS)]
        followers = [asyncio.ensure_future(_follow(store, mine, 2)) for mine in seen]
        try:
            while any(not mine for mine in seen):
                await asyncio.sleep(0.01)
            caught_up = reads[0]
            await asyncio.sleep(4 * sqlite_module.POLL_INTERVAL + 0.2)  # four polls, idle
            assert reads[0] - caught_up <= 2  # (was a page each, every poll: 80)
            assert 1 <= probes[0] <= 8
            # another store object is another process to this one: its commit wakes
            # nobody here, the next poll finds it
            await other.append("order.2", Event("order.placed", {}))
            await asyncio.wait_for(asyncio.gather(*followers), 10)
        finally:
            sqlite_module._head = head  # type: ignore[assignment]
            for follower in followers:
                follower.cancel()
        assert all([e.stream for e in mine] == ["order.1", "order.2"] for mine in seen)


async def test_a_cancelled_waiter_leaves_the_shared_read_to_the_others(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/events.db"
    async with EventStore(url) as store, EventStore(url) as other:
        await store.append("order.1", Event("order.placed", {}))
        seen: list[list[Event]] = [[] for _ in range(4)]
        followers = [asyncio.ensure_future(_follow(store, mine, 2)) for mine in seen]
        while any(not mine for mine in seen):
            await asyncio.sleep(0.01)
        # cancelled at various points of their polls, while the others share reads
        for delay, follower in zip((0.45, 0.5, 0.55), followers[1:], strict=True):
            await asyncio.sleep(delay)
            follower.cancel()
        await other.append("order.2", Event("order.placed", {}))
        await asyncio.wait_for(followers[0], 10)
        assert [e.stream for e in seen[0]] == ["order.1", "order.2"]
        for follower in followers[1:]:
            assert follower.cancelled()
