"""The activity chart and /api/stats: every event counted by the store, none read.

The console used to read (and decode) up to the newest 100,000 events of the window to
count them, saying "capped" past that. It now asks the store, which counts from an index
on recorded_at (``EventStore.count_by_minute``): exact, whatever the number of events,
and an event that cannot be decoded counts like the others. Minutes are the clock's.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from pepperpy.event import Event, EventStore
from pepperpy.event.cli import _console
from pepperpy.event.cli._console import console_app
from pepperpy.event.security import AccessControl
from pepperpy.event.store.base import MINUTE
from tests.store.conformance import record_at

START = 29_000_000 * MINUTE  # 2025-02-19T21:20Z, on a whole minute


def _client(store: EventStore) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=console_app(store))
    return httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8080")


class CountingStore(EventStore):
    """Counts the reads of the global log and the counts asked of the store."""

    reads = 0
    counts = 0

    def read_all(self, *args: Any, **kwargs: Any) -> Any:
        self.reads += 1
        return super().read_all(*args, **kwargs)

    async def count_by_minute(self, *args: Any, **kwargs: Any) -> Any:
        self.counts += 1
        return await super().count_by_minute(*args, **kwargs)


async def test_every_event_is_counted_none_read() -> None:
    """More events than the old cap (100,000), each of which would fail to decode: all
    counted, none read."""
    store = CountingStore()
    for _ in range(10):
        await store.append("a.1", [{"type": "t.x"}] * 10_000)
    await store.append("b.1", {"type": "t.y"})

    @store.upcaster("t.x")  # after the appends: the store refuses t.x at version 1 now
    def broken(data: Any) -> Any:
        raise RuntimeError("never called: counting decodes nothing")

    async with _client(store) as http:
        answer = await http.get("/api/stats")
        index = (await http.get("/")).text
    assert answer.status_code == 200, answer.text
    stats = answer.json()
    assert sum(stats["per_minute"]) == 100_001
    assert stats["by_type"] == {"t.x": 100_000, "t.y": 1}
    assert "capped" not in stats and store.reads == 0
    assert 'aria-label="appends per minute, peak ' in index and "at least" not in index


async def test_minutes_are_whole_minutes_of_the_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    store = EventStore()
    await store.append("a.1", [{"type": "t.x"}] * 4 + [{"type": "t.y"}] * 2)
    await record_at(
        store,
        {
            0: START - 1,  # before the window: not counted
            1: START,  # the window's first microsecond
            2: START + MINUTE + 59_999_999,
            3: START + 2 * MINUTE,
            4: START + 2 * MINUTE + 1,
            5: START + 5 * MINUTE,  # after "now": a database clock ahead of ours
        },
    )
    monkeypatch.setattr(_console, "_now", lambda: START + 2 * MINUTE + 30_000_000)
    async with _client(store) as http:
        stats = (await http.get("/api/stats", params={"minutes": 3})).json()
    assert stats == {
        "minutes": 3,
        "since": "2025-02-19T21:20:00+00:00",
        "per_minute": [1, 1, 3],  # the current minute, so far (and later)
        "by_type": {"t.x": 3, "t.y": 2},
    }


async def test_counts_are_reused_for_a_few_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    store = CountingStore()
    await store.append("a.1", Event("t.x", {}))
    async with _client(store) as http:
        first = (await http.get("/api/stats")).json()
        assert store.counts == 1
        await store.append("a.1", Event("t.x", {}))
        assert (await http.get("/api/stats")).json() == first  # the same count, not asked again
        assert (await http.get("/")).status_code == 200
        assert store.counts == 1
        other = (await http.get("/api/stats", params={"minutes": 5})).json()  # another window
        assert sum(other["per_minute"]) == 2 and store.counts == 2
        monkeypatch.setattr(_console, "STATS_SECONDS", 0.0)  # every count has expired
        fresh = (await http.get("/api/stats")).json()
    assert sum(fresh["per_minute"]) == 2 and fresh["by_type"] == {"t.x": 2}
    assert store.reads == 0


async def test_a_console_that_may_read_some_streams_only_gets_no_counts() -> None:
    """Counts by type over every stream would tell about the streams it may not read."""
    access = AccessControl(default="deny")
    access.allow("#", "append", "#")
    access.allow("anonymous", "read", "orders.#")
    store = EventStore(access=access)
    await store.append("salaries.1", {"type": "salary.paid"})
    async with _client(store) as http:
        answer = await http.get("/api/stats")
    assert answer.status_code == 403
    assert answer.json() == {"error": "principal 'anonymous' may not read '#'"}
