"""The live tail's backlog is bounded by bytes, and read a few large events at a time.

``/api/tail?lines=1000`` read the last 1,000 events whole, in one read, and kept them
until sent, however large: 1,000 events of 1 MB were a gigabyte per browser opening
``/tail``. The backlog is now the newest events that fit in 4 MiB (at least one),
read newest first in batches sized by the largest seen.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from pepperpy.event import Event, EventStore

from .test_console import client, read_sse

__all__ = ["client"]  # a fixture, over this module's store

BIG, EVENTS = 1_000_000, 12


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[EventStore]:
    async with EventStore(f"sqlite:///{tmp_path}/events.db") as events:
        for n in range(EVENTS):
            await events.append("big.1", Event("big.x", {"n": n, "blob": "x" * BIG}))
        await events.append("small.1", [Event("small.x", {"n": n}) for n in range(3)])
        yield events


@pytest.fixture
def reads(store: EventStore, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The rows each backend read of the log, backwards, returned."""
    backend = store.backend
    counted: list[int] = []
    read_backwards = backend.read_all_backwards

    async def counting(*args: Any, **kwargs: Any) -> Any:
        page = await read_backwards(*args, **kwargs)
        counted.append(len(page.rows))
        return page

    monkeypatch.setattr(backend, "read_all_backwards", counting)
    return counted


async def _backlog(
    client: httpx.AsyncClient, store: EventStore, lines: int, marker: str
) -> list[tuple[int, dict[str, Any]]]:
    """The backlog's events: those before ``marker``, appended once the tail began."""
    async with client.stream("GET", "/api/tail", params={"lines": lines}) as response:
        assert response.status_code == 200
        events: list[tuple[int, dict[str, Any]]] = []
        stream = response.aiter_lines()
        while True:
            got = await asyncio.wait_for(read_sse(stream, 1), 10)
            if got[0][1]["stream"] == marker:
                return events
            events += got
            if len(events) == 1:  # the backlog was read whole before the stream began
                await store.append(marker, Event("end.x", {}))


async def test_the_backlog_is_the_newest_events_that_fit(
    client: httpx.AsyncClient, store: EventStore, reads: list[int]
) -> None:
    backlog = await _backlog(client, store, 1000, "end.1")
    # 3 small events and the 4 newest large ones (about 4 MB), oldest first
    assert [event["stream"] for _, event in backlog] == ["big.1"] * 4 + ["small.1"] * 3
    assert [event["position"] for _, event in backlog] == [8, 9, 10, 11, 0, 1, 2]
    assert [ident for ident, _ in backlog] == list(range(EVENTS - 4, EVENTS + 3))
    assert max(reads) <= 8  # never the 15 events (15 MB) at once
    # fewer lines than fit: exactly those
    backlog = await _backlog(client, store, 2, "end.2")
    assert [(event["stream"], event["position"]) for _, event in backlog] == [
        ("small.1", 2),
        ("end.1", 0),
    ]
