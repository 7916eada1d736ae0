"""The time summary every built-in backend keeps (``StoreBackend.time_ranges``), on memory,
SQLite and PostgreSQL: per block of global positions, the least and greatest timestamp
written, kept by appends and by copies, filled by the migration for older stores.

Blocks are ``BLOCK`` positions wide, so the stores here hold a few thousand events.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pepperpy.event import EventStore, copy_store
from pepperpy.event.store import MemoryBackend, _pg_schema
from pepperpy.event.store._time_blocks import BLOCK, EARLIEST, LATEST
from pepperpy.event.store.base import StoreBackend, to_micros
from tests.conftest import unique_name

KINDS = ("memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres))
T0 = datetime(2024, 1, 1, tzinfo=UTC)

Opener = Callable[..., Awaitable[EventStore]]


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def us(seconds: float) -> int:
    return to_micros(at(seconds))


@pytest.fixture
def postgres_database(request: pytest.FixtureRequest) -> str | None:
    callspec = getattr(request.node, "callspec", None)
    if callspec is None or "postgres" not in callspec.params.values():
        return None
    database: str = request.getfixturevalue("database")
    return database


@pytest.fixture
async def open_store(postgres_database: str | None, tmp_path: Path) -> AsyncIterator[Opener]:
    """``await open_store(kind)``: a new store of that kind, closed (and dropped) after."""
    opened: list[EventStore] = []
    schemas: list[str] = []

    async def make(kind: str, url: str | None = None) -> EventStore:
        if url is None:
            if kind == "memory":
                url = "memory://"
            elif kind == "sqlite":
                url = f"sqlite:///{tmp_path / unique_name('events')}.db"
            else:
                assert postgres_database is not None
                schema = unique_name("blocks")
                schemas.append(schema)
                url = f"{postgres_database}?schema={schema}"
        store = EventStore(url)
        opened.append(store)
        return store

    yield make
    for store in opened:
        await store.close()
    if schemas:
        import asyncpg

        connection = await asyncpg.connect(postgres_database)
        try:
            for schema in schemas:
                await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await connection.close()


async def fill(store: EventStore, count: int, first: int = 0, stream: str = "tick.1") -> None:
    """``count`` events whose timestamps are ``T0 + n`` seconds, n = first, first + 1..."""
    for start in range(first, first + count, 500):
        batch = range(start, min(start + 500, first + count))
        await store.append(
            stream, [{"type": "tick", "data": {"n": n}, "timestamp": at(n)} for n in batch]
        )


async def ranges(
    store: EventStore, start: float | None, end: float | None, from_position: int = 0
) -> list[tuple[int, int | None]] | None:
    low = EARLIEST if start is None else us(start)
    high = LATEST if end is None else us(end)
    return await store.backend.time_ranges(low, high, from_position)


@pytest.mark.parametrize("kind", KINDS)
async def test_an_empty_store_has_no_range(open_store: Opener, kind: str) -> None:
    store = await open_store(kind)
    assert await ranges(store, None, None) == []
    assert await ranges(store, 0, 10) == []


@pytest.mark.parametrize("kind", KINDS)
async def test_ordered_timestamps_narrow_a_window_to_its_blocks(
    open_store: Opener, kind: str
) -> None:
    store = await open_store(kind)
    await fill(store, 3 * BLOCK)  # event n at position n, T0 + n seconds
    assert await ranges(store, BLOCK + 100, BLOCK + 200) == [(BLOCK, 2 * BLOCK)]
    # the window's bounds fall on the blocks' edges: start inclusive, end exclusive
    assert await ranges(store, BLOCK, 2 * BLOCK) == [(BLOCK, 2 * BLOCK)]
    assert await ranges(store, BLOCK - 1, BLOCK) == [(0, BLOCK)]
    # the last block is left open: appends to come land there or past it
    assert await ranges(store, 2 * BLOCK + 5, None) == [(2 * BLOCK, None)]
    assert await ranges(store, None, 10) == [(0, BLOCK)]
    assert await ranges(store, None, None) == [(0, None)]
    # never before from_position
    assert await ranges(store, 0, None, from_position=1500) == [(1500, None)]
    assert await ranges(store, 0, BLOCK + 1, from_position=1500) == [(1500, 2 * BLOCK)]
    assert await ranges(store, 0, 10, from_position=1500) == []


@pytest.mark.parametrize("kind", KINDS)
async def test_windows_past_the_timestamps_or_the_head_hold_nothing(
    open_store: Opener, kind: str
) -> None:
    store = await open_store(kind)
    await fill(store, BLOCK + 10)
    assert await ranges(store, 10 * BLOCK, None) == []  # later than every timestamp
    assert await ranges(store, -100, -1) == []  # earlier than every one
    assert await store._time_ranges(at(5), at(5), 0) == []  # empty: nothing to read
    assert await ranges(store, 0, None, from_position=10 * BLOCK) == []  # past the head


@pytest.mark.parametrize("kind", KINDS)
async def test_a_late_event_with_an_old_timestamp_is_in_a_range(
    open_store: Opener, kind: str
) -> None:
    store = await open_store(kind)
    await fill(store, 3 * BLOCK)
    late = await store.append("late.1", {"type": "tick", "timestamp": at(10)})
    assert late.global_position == 3 * BLOCK
    assert await ranges(store, 5, 20) == [(0, BLOCK), (3 * BLOCK, None)]
    # a later window skips the blocks in the middle
    assert await ranges(store, BLOCK + 1, BLOCK + 2) == [(BLOCK, 2 * BLOCK)]


@pytest.mark.parametrize("kind", KINDS)
async def test_a_deleted_streams_events_still_count(open_store: Opener, kind: str) -> None:
    """Conservative: the summary covers every row written, hidden ones too."""
    store = await open_store(kind)
    await fill(store, BLOCK, stream="kept.1")
    await fill(store, BLOCK, first=BLOCK, stream="doomed.1")
    await store.delete_stream("doomed.1")
    assert await ranges(store, BLOCK + 5, BLOCK + 6) == [(BLOCK, None)]


@pytest.mark.parametrize("kind", KINDS)
async def test_a_copy_carries_the_summary(open_store: Opener, kind: str) -> None:
    source = await open_store("memory")
    await fill(source, 2 * BLOCK)
    await source.append("late.1", {"type": "tick", "timestamp": at(3)})
    destination = await open_store(kind)
    await copy_store(source, destination, batch_size=700)
    for window in [(0, 5), (BLOCK + 3, BLOCK + 4), (2 * BLOCK, None), (None, None)]:
        assert await ranges(destination, *window) == await ranges(source, *window)
    assert await ranges(destination, 0, 5) == [(0, BLOCK), (2 * BLOCK, None)]


async def test_a_backend_without_a_summary_says_so() -> None:
    """The contract's default: None, read everything (a backend written before it)."""

    class Plain(MemoryBackend):
        async def time_ranges(
            self, start: int, end: int, from_position: int
        ) -> list[tuple[int, int | None]] | None:
            return await StoreBackend.time_ranges(self, start, end, from_position)

    store = EventStore(Plain())
    try:
        await fill(store, 3)
        assert await ranges(store, 0, 1) is None
    finally:
        await store.close()


# -- existing stores: the migration fills the summary --------------------------------------


async def test_an_sqlite_store_of_the_previous_schema_is_summarized_when_opened(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    store = EventStore(f"sqlite:///{path}")
    await fill(store, 2 * BLOCK + 10)
    await store.append("late.1", {"type": "tick", "timestamp": at(3)})
    await store.close()
    with closing(sqlite3.connect(path)) as connection:  # back to schema 6, as it was
        connection.execute("DROP TABLE time_blocks")
        connection.execute("PRAGMA user_version = 6")
        connection.commit()

    read_only = EventStore(f"sqlite:///{path}?mode=ro")
    try:  # a read-only store is never migrated: no summary, so no seek
        assert await ranges(read_only, 0, 5) is None
    finally:
        await read_only.close()

    store = EventStore(f"sqlite:///{path}")
    try:
        assert await ranges(store, 0, 5) == [(0, BLOCK), (2 * BLOCK, None)]
        assert await ranges(store, BLOCK + 1, BLOCK + 2) == [(BLOCK, None)]  # the late one
        assert await ranges(store, 3 * BLOCK, None) == []
        await store.append("later.1", {"type": "tick", "timestamp": at(4 * BLOCK)})
        assert await ranges(store, 3 * BLOCK, None) == [(2 * BLOCK, None)]
    finally:
        await store.close()
    with closing(sqlite3.connect(path)) as connection:
        (version,) = connection.execute("PRAGMA user_version").fetchone()
    assert version == 7


@pytest.mark.postgres
async def test_a_postgres_store_of_the_previous_schema_is_summarized_when_opened(
    database: str,
) -> None:
    import asyncpg

    schema = unique_name("old")
    url = f"{database}?schema={schema}"
    store = EventStore(url)
    try:
        await fill(store, 2 * BLOCK + 10)
        await store.append("late.1", {"type": "tick", "timestamp": at(3)})
    finally:
        await store.close()
    connection = await asyncpg.connect(database)
    try:
        await connection.execute(f'SET search_path = "{schema}"')
        await connection.execute(
            "DROP TRIGGER pepperpy_events_time_blocks ON pepperpy_events; "
            "DROP FUNCTION pepperpy_note_time_blocks(); DROP TABLE pepperpy_time_blocks; "
            "DELETE FROM pepperpy_schema_version WHERE version >= 4"
        )
        store = EventStore(url)
        try:
            assert await ranges(store, 0, 5) == [(0, BLOCK), (2 * BLOCK, None)]
            assert await ranges(store, 3 * BLOCK, None) == []
            await store.append("later.1", {"type": "tick", "timestamp": at(4 * BLOCK)})
            assert await ranges(store, 3 * BLOCK, None) == [(2 * BLOCK, None)]
        finally:
            await store.close()
        versions = await connection.fetch("SELECT version FROM pepperpy_schema_version")
        assert sorted(row[0] for row in versions) == list(range(1, len(_pg_schema._MIGRATIONS) + 1))
    finally:
        await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await connection.close()
