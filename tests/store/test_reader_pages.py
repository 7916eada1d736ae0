"""Limited reads past hidden events: pages grow while they come back short.

A reader with a ``limit`` and no filter asks the backend for ``limit`` rows a page; the
events of deleted streams are scanned but not returned, so a page past them came back
short and the next asked for ``limit`` rows again. A filtered read through an index
pages the same way (what an index finds is mostly what the filter keeps).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from pepperpy.event import EventStore
from pepperpy.event.store import MemoryBackend
from pepperpy.event.store.base import LogPage
from pepperpy.event.store.sqlite import SQLiteBackend


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


class SizedSQLite(SQLiteBackend):
    """Records the page sizes filtered reads ask the index for."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.sizes: list[int] = []

    async def read_all_matching(
        self,
        from_position: int,
        limit: int,
        column: str,
        prefixes: Sequence[str],
        backwards: bool = False,
    ) -> LogPage:
        self.sizes.append(limit)
        return await super().read_all_matching(from_position, limit, column, prefixes, backwards)


@pytest.mark.parametrize("backwards", [False, True])
async def test_a_limited_read_through_an_index_asks_for_about_limit_rows(
    tmp_path: Path, backwards: bool
) -> None:
    """The rows an index finds are (mostly) matches: ``read_all(types=..., limit=10)``
    (``pepperpy-event tail -n 10 --types ...``) asked it for 10,000, and read them all
    (40 ms on 200,000 events, slower than the scan it replaced); it now asks for 10,
    more only while pages come back short (of rows the patterns leave out)."""
    backend = SizedSQLite(str(tmp_path / "events.db"))
    async with EventStore(backend) as store:
        await store.append("s.1", [{"type": f"t.{n % 4}"} for n in range(400)])
        await store.append("s.1", [{"type": f"t.{n % 4}.v2"} for n in range(40)])
        start = 399 if backwards else 0
        found = await store.read_all(start, backwards=backwards, types="t.1", limit=10)
        assert [e.type for e in found] == ["t.1"] * 10
        assert backend.sizes == [10]
        backend.sizes.clear()
        # t.1.v2 is under the prefix t.1 but not a match: pages grow past it
        newest = await store.read_all(439, backwards=True, types="t.1", limit=1)
        assert [e.global_position for e in newest] == [397]
        assert backend.sizes[0] == 1 and len(backend.sizes) <= 7  # 1, 2, 4, ... 64 > 40
