"""/api/stats and the chart on /: one count at a time per window, a few windows kept.

Each request used to count for itself once the window's count had expired: thirty
browsers reloading / together made thirty counts of the last hour, each an index scan
queued in the store's read threads ahead of every other request. And every window asked
for (1 to 1440 minutes) kept its count for good.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from pepperpy.event import Event, EventStore
from pepperpy.event.cli import _console
from pepperpy.event.cli._console import console_app


class GatedStore(EventStore):
    """A memory store whose counts (``count_by_minute``) wait for ``gate``, counted."""

    def __init__(self) -> None:
        super().__init__()
        self.counts = 0
        self.gate = asyncio.Event()
        self.gate.set()

    async def count_by_minute(self, *args: Any, **kwargs: Any) -> Any:
        self.counts += 1
        await self.gate.wait()
        return await super().count_by_minute(*args, **kwargs)


def _client(store: EventStore) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=console_app(store))
    return httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8080")


async def _until(condition: Any) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the condition did not hold within 5 s")


async def test_requests_arriving_during_a_count_share_it() -> None:
    store = GatedStore()
    await store.append("a.1", Event("t.x", {}))
    store.gate.clear()
    async with _client(store) as http:
        first = asyncio.ensure_future(http.get("/api/stats"))
        await _until(lambda: store.counts == 1)  # the first count is under way
        pages = [asyncio.ensure_future(http.get("/")) for _ in range(10)]
        others = [asyncio.ensure_future(http.get("/api/stats")) for _ in range(10)]
        await asyncio.sleep(0.2)  # every request has arrived and waits
        store.gate.set()
        answers = await asyncio.gather(first, *pages, *others)
    assert [answer.status_code for answer in answers] == [200] * 21
    assert store.counts == 1
    assert {
        answer.json()["by_type"]["t.x"]
        for answer in [first.result(), *(o.result() for o in others)]
    } == {1}


async def test_a_client_leaving_does_not_cancel_the_count_others_wait_for() -> None:
    store = GatedStore()
    await store.append("a.1", Event("t.x", {}))
    store.gate.clear()
    async with _client(store) as http:
        leaving = asyncio.ensure_future(http.get("/api/stats"))
        await _until(lambda: store.counts == 1)
        staying = asyncio.ensure_future(http.get("/api/stats"))
        await asyncio.sleep(0.1)
        leaving.cancel()
        await asyncio.sleep(0.1)
        store.gate.set()
        answer = await staying
    assert answer.status_code == 200 and answer.json()["by_type"] == {"t.x": 1}
    assert store.counts == 1


async def test_a_failed_count_answers_everyone_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    store = GatedStore()
    await store.append("a.1", Event("t.x", {}))
    store.gate.clear()
    async with _client(store) as http:
        waiting = [asyncio.ensure_future(http.get("/api/stats")) for _ in range(3)]
        await _until(lambda: store.counts == 1)
        await asyncio.sleep(0.1)
        await store.close()  # the count then fails: the store is closed
        store.gate.set()
        answers = await asyncio.gather(*waiting)
    assert [answer.status_code for answer in answers] == [503] * 3
    assert store.counts == 1


async def test_only_the_windows_asked_for_last_are_kept() -> None:
    store = GatedStore()
    await store.append("a.1", Event("t.x", {}))
    async with _client(store) as http:
        for minutes in range(1, 31):
            answer = await http.get("/api/stats", params={"minutes": minutes})
            assert answer.status_code == 200
        assert store.counts == 30
        await http.get("/api/stats", params={"minutes": 30})  # kept: not counted again
        assert store.counts == 30
        await http.get("/api/stats", params={"minutes": 1})  # forgotten: counted again
        assert store.counts == 31
    assert _console.STATS_KEPT < 30
