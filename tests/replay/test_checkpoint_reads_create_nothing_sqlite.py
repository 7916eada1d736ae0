"""The SQLite checkpoint store's reads create nothing, as PostgreSQL's do.

A writable store created its table (``pepperpy_checkpoints``) when its connection was
opened, reads included, and switched the file to WAL mode: ``names()``, ``load()`` and
``delete()`` on a file where nothing was saved ran DDL on it, and on a path with no
file at all they made the file. Now they answer none ([], None, False) and leave the
file as it was (no file where there was none); the first write makes the file, the WAL
switch and the table. What every backend shares is in ``test_checkpoints.py``.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

from pepperpy.event import Event, EventProcessor, EventStore, Projection, SQLiteCheckpointStore
from pepperpy.event._checkpoints import open_checkpoint_store


def _tables(path: Path) -> list[str]:
    with closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as db:
        rows = db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        return sorted(name for (name,) in rows)


async def _event_store(path: Path) -> str:
    url = f"sqlite:///{path}"
    async with EventStore(url) as store:
        await store.append("order.1", Event("order.placed", {"n": 1}))
    return url


async def test_reads_on_an_event_store_make_no_table(tmp_path: Path) -> None:
    url = await _event_store(tmp_path / "events.db")
    before = _tables(tmp_path / "events.db")
    assert "pepperpy_checkpoints" not in before
    store = open_checkpoint_store(url)
    try:
        assert await store.names() == []
        assert await store.load("projection:sales") is None
        assert await store.delete("projection:sales") is False
        assert _tables(tmp_path / "events.db") == before

        await store.save("projection:sales", 1, {"n": 1}, previous=None)  # the first write
        assert _tables(tmp_path / "events.db") == sorted([*before, "pepperpy_checkpoints"])
        assert await store.names() == ["projection:sales"]
    finally:
        await store.close()


async def test_reads_leave_a_file_of_another_kind_byte_for_byte(tmp_path: Path) -> None:
    """Not even the switch to WAL mode (which rewrites the header) is made by a read."""
    path = tmp_path / "other.db"
    with closing(sqlite3.connect(path)) as db:  # rollback journal, another app's table
        db.execute("CREATE TABLE notes (body TEXT)")
        db.execute("INSERT INTO notes VALUES ('kept')")
        db.commit()
    content = path.read_bytes()
    store = SQLiteCheckpointStore(path)
    try:
        assert (await store.names(), await store.load("a"), await store.delete("a")) == (
            [],
            None,
            False,
        )
        await store.close()
        assert path.read_bytes() == content
        assert sorted(p.name for p in tmp_path.iterdir()) == ["other.db"]

        await store.save("a", 1, previous=None)
        assert _tables(path) == ["notes", "pepperpy_checkpoints"]
        with closing(sqlite3.connect(path)) as db:
            assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        await store.close()


async def test_reads_on_a_missing_path_make_no_file(tmp_path: Path) -> None:
    path = tmp_path / "nothing-yet.db"
    store = SQLiteCheckpointStore(path)
    try:
        assert await store.names() == []
        assert await store.load("a") is None
        assert await store.delete("a") is False
        assert list(tmp_path.iterdir()) == []  # no file, no -wal or -shm

        revision = await store.save("a", 2, {"x": 1}, previous=None)  # it makes the file
        assert _tables(path) == ["pepperpy_checkpoints"]
        loaded = await store.load("a")
        assert loaded is not None and loaded.revision == revision
    finally:
        await store.close()


async def test_a_table_another_store_makes_later_is_read_at_once(tmp_path: Path) -> None:
    url = await _event_store(tmp_path / "events.db")
    reader, writer = open_checkpoint_store(url), open_checkpoint_store(url)
    try:
        assert await reader.load("a") is None  # its connection is open: no table yet
        await writer.save("a", 5, {"n": 5}, previous=None)
        loaded = await reader.load("a")
        assert loaded is not None and (loaded.position, loaded.state) == (5, {"n": 5})
        assert await reader.names() == ["a"]
        assert await reader.delete("a") is True
        assert await writer.load("a") is None
    finally:
        await reader.close()
        await writer.close()


async def test_create_option_off_reads_an_event_store_without_making_the_table(
    tmp_path: Path,
) -> None:
    url = await _event_store(tmp_path / "events.db")
    before = _tables(tmp_path / "events.db")
    store = open_checkpoint_store(f"{url}?create=0")
    try:
        assert await store.names() == []
        assert await store.load("a") is None
    finally:
        await store.close()
    assert _tables(tmp_path / "events.db") == before


async def test_what_reads_checkpoints_through_the_library_makes_no_table(tmp_path: Path) -> None:
    url = await _event_store(tmp_path / "events.db")
    before = _tables(tmp_path / "events.db")
    async with EventStore(url) as store:
        assert await EventProcessor().reset_checkpoint(store, "nightly") is False
        projection = Projection("sales", store, initial=0)
        try:
            assert await projection.load() == 0
        finally:
            await projection.close()
    assert _tables(tmp_path / "events.db") == before
