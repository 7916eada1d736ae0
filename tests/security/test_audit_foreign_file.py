"""``AuditLog(path)`` on a database that holds other tables is refused, and left as it is.

``AuditLog("events.db")`` (the event store's file given by mistake) used to add the
audit tables to it and record there; the reading side already refused the converse
("not an audit log"). Now a writer refuses any database with tables but no
``audit_log`` table, naming them, before anything writes to it: not even the switch to
WAL mode. An empty file, an empty database and an existing audit log are still opened.
"""

from __future__ import annotations

import hashlib
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from pepperpy.event import ConfigurationError, EventStore
from pepperpy.event.security import AuditLog


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def test_an_event_store_file_is_refused_and_left_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    async with EventStore(f"sqlite:///{path}") as store:
        await store.append("orders.1", [{"type": "placed", "data": {"n": 1}}])
    before = sha256(path)
    with pytest.raises(ConfigurationError) as caught:
        AuditLog(str(path))
    message = str(caught.value)
    assert message.startswith(f"{str(path)!r} is not an audit log: it holds other tables"), message
    assert "(an event store)" in message and "events" in message, message
    assert "nothing was added to it: give the audit log a file of its own" in message
    assert sha256(path) == before
    with closing(sqlite3.connect(path)) as db, db:
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master")}
    assert not tables & {"audit_log", "audit_meta"}, tables
    async with EventStore(f"sqlite:///{path}?mode=ro") as store:  # still a store
        assert [event.type for event in await store.read_all(0)] == ["placed"]


def test_another_applications_database_is_refused_before_its_journal_mode_changes(
    tmp_path: Path,
) -> None:
    path = tmp_path / "app.db"
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
        db.execute("INSERT INTO users (name) VALUES ('ada')")
    db.close()
    before = sha256(path)
    with pytest.raises(ConfigurationError, match=r"holds other tables: users; nothing was added"):
        AuditLog(str(path), key=b"k" * 32)
    assert sha256(path) == before
    with closing(sqlite3.connect(path)) as db, db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("delete",)  # not WAL
    db.close()


def test_an_empty_file_an_empty_database_and_an_audit_log_are_opened(tmp_path: Path) -> None:
    empty_file = tmp_path / "empty"
    empty_file.touch()
    empty_database = tmp_path / "empty.db"
    sqlite3.connect(empty_database).close()
    log_file = tmp_path / "audit.db"
    with AuditLog(str(log_file)) as log:
        log.record("setup", "-")
    for path in (empty_file, empty_database, log_file):
        with AuditLog(str(path)) as log:
            log.record("append", "orders.1")
            assert log.verify().ok
    with AuditLog(str(log_file), read_only=True) as log:
        assert log.verify().checked == 2
