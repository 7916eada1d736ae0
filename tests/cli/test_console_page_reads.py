"""A stream page reads large events from the store in small batches.

``/streams/NAME`` shows 2,000 characters of each event's data, but read the page's
events (up to 1,000) whole in one go: 1,000 events of 1 MB each were a gigabyte in
memory to render a page of two. It now reads batches sized by the largest event seen.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from pepperpy.event import Event, EventStore
from pepperpy.event.cli._console import console_app

EVENTS, SIZE = 24, 1_000_000
FIRST_READ = 8  # what the first batch asks for, before any size is known


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[EventStore]:
    async with EventStore(f"sqlite:///{tmp_path}/events.db") as events:
        for n in range(EVENTS):
            await events.append("big.1", Event("t.x", {"n": n, "blob": "x" * SIZE}))
        await events.append("small.1", [Event("t.x", {"n": n}) for n in range(1000)])
        yield events


@pytest.fixture
def reads(store: EventStore, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The rows each backend read of a stream returned."""
    backend = store.backend
    counted: list[int] = []
    read_stream = backend.read_stream

    async def counting(*args: Any, **kwargs: Any) -> Any:
        rows = await read_stream(*args, **kwargs)
        counted.append(len(rows))
        return rows

    monkeypatch.setattr(backend, "read_stream", counting)
    return counted


async def test_a_page_of_large_events_is_read_a_few_at_a_time(
    store: EventStore, reads: list[int]
) -> None:
    transport = httpx.ASGITransport(app=console_app(store))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        page = await http.get("/streams/big.1", params={"limit": 1000})
        assert page.status_code == 200
        assert page.text.count("<tr><td>") == EVENTS
        assert "<tr><td>23</td>" in page.text
        assert sum(reads) == EVENTS
        assert max(reads) <= FIRST_READ  # then about 4 MiB's worth: 4 events of 1 MB
        # small events: still the whole page, in a few reads, and its links
        reads.clear()
        small = await http.get("/streams/small.1", params={"from": 10, "limit": 1000})
        assert small.text.count("<tr><td>") == 990
        assert "<tr><td>999</td>" in small.text and "next 1000" not in small.text
        assert len(reads) <= 6
        first = await http.get("/streams/small.1", params={"limit": 10})
        assert first.text.count("<tr><td>") == 10 and "?from=10&limit=10" in first.text
