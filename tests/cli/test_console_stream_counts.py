"""The stream list counts a page's streams with one backend read, not one per stream.

Each stream of a page was counted with its own query: a page of 1,000 streams took
1,000 round trips, about half a second on PostgreSQL over loopback, at every reload.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import httpx
import pytest

from pepperpy.event import Event, EventStore
from pepperpy.event.cli._console import console_app
from pepperpy.event.store.base import StreamState

STREAMS = 300


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[EventStore]:
    async with EventStore(f"sqlite:///{tmp_path}/events.db") as events:
        for n in range(STREAMS):
            await events.append(f"s.{n:04d}", [Event("t.x", {}) for _ in range(n % 3 + 1)])
        await events.delete_stream("s.0000")  # deleted: not listed
        yield events


async def test_a_page_of_streams_is_counted_in_one_read(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = store.backend
    reads: list[int] = []
    states = backend.stream_states

    async def stream_state(stream: str) -> StreamState | None:
        raise AssertionError(f"{stream} counted alone")

    async def stream_states(streams: Sequence[str]) -> dict[str, StreamState]:
        reads.append(len(streams))
        return await states(streams)

    monkeypatch.setattr(backend, "stream_state", stream_state)
    monkeypatch.setattr(backend, "stream_states", stream_states)
    transport = httpx.ASGITransport(app=console_app(store))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        listed = (await http.get("/api/streams", params={"limit": 1000})).json()
        assert reads == [STREAMS - 1]
        assert listed[:3] == [
            {"name": "s.0001", "events": 2},
            {"name": "s.0002", "events": 3},
            {"name": "s.0003", "events": 1},
        ]
        assert sum(item["events"] for item in listed) == sum(n % 3 + 1 for n in range(1, STREAMS))
        page = await http.get("/", params={"limit": 100, "after": "s.0100"})
        assert page.status_code == 200
        assert reads == [STREAMS - 1, 100]
        assert '<a href="/streams/s.0101">s.0101</a></td><td>3</td>' in page.text
