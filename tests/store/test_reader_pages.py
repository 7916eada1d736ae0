"""Limited reads past hidden events: pages grow while they come back short.

A reader with a ``limit`` and no filter asks the backend for ``limit`` rows a page; the
events of deleted streams are scanned but not returned, so a page past them came back
short and the next asked for ``limit`` rows again.
"""

from __future__ import annotations

import pytest

from pepperpy.event import EventStore
from pepperpy.event.store import MemoryBackend
from pepperpy.event.store.base import LogPage


class CountingBackend(MemoryBackend):
    """Counts the pages of the log read from it."""

    def __init__(self) -> None:
        super().__init__()
        self.pages = 0

    async def read_all(self, from_position: int, limit: int) -> LogPage:
        self.pages += 1
        return await super().read_all(from_position, limit)

    async def read_all_backwards(self, from_position: int, limit: int) -> LogPage:
        self.pages += 1
        return await super().read_all_backwards(from_position, limit)


@pytest.mark.parametrize("backwards", [False, True])
async def test_a_limited_read_scans_past_hidden_events_in_growing_pages(backwards: bool) -> None:
    """``read_all(limit=1)`` scanned one row a page, so a run of 3,000 hidden events (a
    deleted stream, such as the CLI's bench leaves) cost 3,000 reads; pages now double
    while they come back short."""
    backend = CountingBackend()
    async with EventStore(backend) as store:
        await store.append("kept.1", {"type": "first"})
        await store.append("gone.1", [{"type": "t.x"}] * 3000)
        await store.delete_stream("gone.1")
        await store.append("kept.1", {"type": "last"})
        start = 1 if not backwards else 3000
        (found,) = await store.read_all(start, backwards=backwards, limit=1)
        assert found.type == ("last" if not backwards else "first")
        assert backend.pages <= 12  # 1 + 2 + ... + 2048 rows > 3,000
        backend.pages = 0
        found_pages = [e.type async for e in store.read_all(start, backwards=backwards, limit=1)]
        assert found_pages == [found.type]
        assert backend.pages <= 9 + 3000 // 500 + 1  # 1 + 2 + ... + 256, then pages of 500
