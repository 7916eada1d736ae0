"""A write whose ROLLBACK fails too raises the write's own error.

``_sqlite.write_transaction`` is the one ``BEGIN IMMEDIATE`` / ``COMMIT`` / quiet
``ROLLBACK`` of the SQLite files the library keeps: the event store's group commit and
schema migration, checkpoints and the audit log. Their copies differed: all but the
audit log rolled back loudly, so when the ``ROLLBACK`` after a failed write (or a failed
``COMMIT``) failed too (an I/O error), its error replaced the write's ("database or disk
is full", which names the cause); all roll back quietly now.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from pepperpy.event import EventStore, SQLiteCheckpointStore, StoreError
from pepperpy.event.security import AuditLog
from pepperpy.event.store import _sqlite_schema, _sqlite_writer
from pepperpy.event.store.sqlite import SQLiteBackend


class FullDisk:
    """A connection whose writes (``INSERT`` unless told) fail as on a full disk, and
    whose ``ROLLBACK`` then fails too, leaving the transaction open."""

    def __init__(self, real: sqlite3.Connection, writes: tuple[str, ...] = ("INSERT",)) -> None:
        self.real = real
        self.writes = writes
        self.rollbacks = 0

    @property
    def in_transaction(self) -> bool:
        return self.real.in_transaction

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if sql.lstrip().startswith(self.writes):
            raise sqlite3.OperationalError("database or disk is full")
        if sql == "ROLLBACK":
            self.rollbacks += 1
            raise sqlite3.OperationalError("disk I/O error")
        return self.real.execute(sql, *args)

    def executemany(self, sql: str, rows: Any) -> sqlite3.Cursor:
        if sql.lstrip().startswith(self.writes):
            raise sqlite3.OperationalError("database or disk is full")
        return self.real.executemany(sql, rows)

    def __getattr__(self, name: str) -> Any:  # close, and whatever else
        return getattr(self.real, name)


async def test_a_checkpoint_save_whose_rollback_fails_says_why_the_write_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SQLiteCheckpointStore(tmp_path / "events.db")
    try:
        await store.save("nightly", 1, {"n": 1}, previous=None)
        real = store._connect()
        failing = FullDisk(real)
        monkeypatch.setattr(store, "_connect", lambda: failing)
        with pytest.raises(StoreError) as caught:
            await store.save("nightly", 2, {"n": 2}, previous=1)
        assert "database or disk is full" in str(caught.value)
        assert "disk I/O error" not in str(caught.value)
        assert failing.rollbacks == 1  # it was tried
        real.execute("ROLLBACK")  # what the failed ROLLBACK left open
        monkeypatch.undo()
        saved = await store.load("nightly")
        assert saved is not None and saved.position == 1
    finally:
        await store.close()


def test_an_audit_record_whose_rollback_fails_says_why_the_write_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with AuditLog(str(tmp_path / "audit.db")) as log:
        log.record("policy.changed", "rule 1")
        real = log._db
        assert real is not None
        failing = FullDisk(real)
        monkeypatch.setattr(log, "_db", failing)
        with pytest.raises(StoreError) as caught:
            log.record("access.denied", "stream 1")
        assert "database or disk is full" in str(caught.value)
        assert "disk I/O error" not in str(caught.value)
        assert failing.rollbacks == 1
        real.execute("ROLLBACK")
        monkeypatch.undo()
        assert [entry.target for entry in log.entries()] == ["rule 1"]


def test_a_migration_whose_rollback_fails_says_why_it_failed(tmp_path: Path) -> None:
    real = sqlite3.connect(tmp_path / "events.db", isolation_level=None)
    try:
        failing = FullDisk(real, writes=("CREATE",))
        with pytest.raises(sqlite3.OperationalError, match="database or disk is full"):
            _sqlite_schema.migrate(failing, str(tmp_path / "events.db"))  # type: ignore[arg-type]
        assert failing.rollbacks == 1
        real.execute("ROLLBACK")
        assert real.execute("PRAGMA user_version").fetchone() == (0,)  # nothing migrated
    finally:
        real.close()


@pytest.mark.parametrize(
    "writes",
    [
        ("COMMIT",),  # a group's COMMIT fails (SQLite left the transaction open)
        ("INSERT",),  # its write fails: with the ROLLBACK failing too, no second try
        ("PRAGMA data_version",),  # the careful path's (a delete's group) first read fails
    ],
)
async def test_a_group_whose_rollback_fails_says_why_it_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, writes: tuple[str, ...]
) -> None:
    path = tmp_path / "events.db"
    opened: list[FullDisk] = []

    def connect(*args: Any, **kwargs: Any) -> Any:
        opened.append(FullDisk(_sqlite_schema.connect(*args, **kwargs), writes=()))
        return opened[-1]

    monkeypatch.setattr(_sqlite_writer, "connect", connect)
    async with EventStore(f"sqlite:///{path}") as store:
        await store.append("kept.1", {"type": "kept"})
        backend = store.backend
        assert isinstance(backend, SQLiteBackend) and len(opened) == 1
        failing = opened[0]
        failing.writes = writes
        with pytest.raises(StoreError) as caught:
            if writes == ("PRAGMA data_version",):
                await store.delete_stream("kept.1")
            else:
                await store.append("lost.1", {"type": "lost"})
        assert str(caught.value).startswith(f"SQLite: {str(path)!r}: database or disk is full")
        assert "disk I/O error" not in str(caught.value)
        assert failing.rollbacks == 1
        # the transaction the failed ROLLBACK left open is ended with its connection,
        # before the next group: before, every later write failed ("cannot start a
        # transaction within a transaction") until the store was closed
        await store.append("after.1", {"type": "after"})
        assert len(opened) == 2  # the first was closed, its transaction with it
        assert [e.stream for e in await store.read_all()] == ["kept.1", "after.1"]
