"""The activity chart and /api/stats: the cap on counted events is said, counts are reused.

Only the newest STATS_CAP events are counted; the index page charted the truncated
counts as 'Appends per minute, last hour' with nothing to show they were cut, and every
view of / counted (and decoded) them all again.
"""

from __future__ import annotations

import httpx
import pytest

from pepperpy.event import Event, EventStore
from pepperpy.event.cli import _console
from pepperpy.event.cli._console import console_app


def _client(store: EventStore) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=console_app(store))
    return httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8080")


async def test_a_capped_count_is_said_on_the_page(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_console, "STATS_CAP", 10)
    store = EventStore()
    await store.append("a.1", [Event("t.x", {"n": n}) for n in range(25)])
    async with _client(store) as http:
        stats = (await http.get("/api/stats")).json()
        index = (await http.get("/")).text
    assert stats["capped"] is True
    assert sum(stats["per_minute"]) == 10 and stats["by_type"] == {"t.x": 10}
    assert "<p>Only the newest 10 events are charted.</p>" in index
    assert 'aria-label="appends per minute, at least (only the newest 10 counted)' in index


async def test_no_cap_note_below_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_console, "STATS_CAP", 10)
    store = EventStore()
    await store.append("a.1", [Event("t.x", {"n": n}) for n in range(10)])
    async with _client(store) as http:
        stats = (await http.get("/api/stats")).json()
        index = (await http.get("/")).text
    assert stats["capped"] is False and sum(stats["per_minute"]) == 10
    assert "Only the newest" not in index and "at least" not in index
    assert 'aria-label="appends per minute, peak 10"' in index


class CountingStore(EventStore):
    """Counts the reads of the global log."""

    reads = 0

    def read_all(self, *args: object, **kwargs: object) -> object:  # type: ignore[override]
        self.reads += 1
        return super().read_all(*args, **kwargs)  # type: ignore[arg-type]


async def test_counts_are_reused_for_a_few_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    store = CountingStore()
    await store.append("a.1", Event("t.x", {}))
    async with _client(store) as http:
        first = (await http.get("/api/stats")).json()
        reads = store.reads
        assert reads > 0
        await store.append("a.1", Event("t.x", {}))
        assert (await http.get("/api/stats")).json() == first  # the same count, not read again
        assert (await http.get("/")).status_code == 200
        assert store.reads == reads
        other = (await http.get("/api/stats", params={"minutes": 5})).json()  # another window
        assert sum(other["per_minute"]) == 2 and store.reads > reads
        monkeypatch.setattr(_console, "STATS_SECONDS", 0.0)  # every count has expired
        fresh = (await http.get("/api/stats")).json()
    assert sum(fresh["per_minute"]) == 2 and fresh["by_type"] == {"t.x": 2}
