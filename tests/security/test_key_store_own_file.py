"""A key store makes its file its own: it refuses a database holding other tables.

Before, ``SQLiteKeyStore("audit.db")`` added its ``data_keys`` table to the audit log
file (or to a checkpoint database, or any application's), so every copy of that file
(an audit log handed to auditors and archived for years) carried the wrapped data keys,
beyond the reach of a shred. It is now refused before anything is written, as an audit
log refuses a file holding other tables.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from pepperpy.event import ConfigurationError, EventStore
from pepperpy.event.security import AuditLog, KeyRing, SQLiteKeyStore, StreamEncryption


def tables(path: Path) -> set[str]:
    with closing(sqlite3.connect(path)) as db:
        return {
            name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }


def test_an_audit_log_file_is_refused_and_left_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    with AuditLog(str(path)) as log:
        log.record("append", "orders.1")
    before = path.read_bytes()
    with pytest.raises(ConfigurationError) as refused:
        SQLiteKeyStore(str(path))
    assert str(refused.value) == (
        f"{str(path)!r} is not a key store: it holds other tables (an audit log): "
        "audit_log, audit_meta; nothing was added to it: give the data keys a file of "
        "their own, kept apart from the events and the audit log (every copy of that file "
        "would carry them)"
    )
    assert tables(path) == {"audit_log", "audit_meta"} and path.read_bytes() == before
    with AuditLog(str(path), read_only=True) as log:
        assert log.verify().ok


async def test_an_event_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    async with EventStore(f"sqlite:///{path}") as store:
        await store.append("user.1", {"type": "user.created", "data": {}})
    with pytest.raises(ConfigurationError, match=r"holds other tables \(an event store\): "):
        SQLiteKeyStore(str(path))
    assert "data_keys" not in tables(path)


def test_another_applications_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("CREATE TABLE users (name TEXT)")
    with pytest.raises(ConfigurationError, match=r"holds other tables: users; nothing was added"):
        SQLiteKeyStore(str(path))
    assert tables(path) == {"users"}


async def test_its_own_file_new_empty_or_with_keys_is_fine(tmp_path: Path) -> None:
    path = tmp_path / "keys.db"
    (tmp_path / "empty.db").write_bytes(b"")
    async with SQLiteKeyStore(str(tmp_path / "empty.db")):
        pass
    ring = KeyRing.generate()
    async with SQLiteKeyStore(str(path)) as key_store:
        envelope = await StreamEncryption(ring, key_store).encrypt("s", "e", b"x")
    async with SQLiteKeyStore(str(path)) as key_store:  # its own file, reopened
        assert await StreamEncryption(ring, key_store).decrypt("s", "e", envelope) == b"x"


async def test_a_file_holding_keys_beside_other_tables_is_left_to_work(tmp_path: Path) -> None:
    """Made so before this check: refusing it now would lose nothing but the keys' use."""
    path = tmp_path / "shared.db"
    async with SQLiteKeyStore(str(path)) as key_store:
        await StreamEncryption(KeyRing.generate(), key_store).encrypt("s", "e", b"x")
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("CREATE TABLE users (name TEXT)")
    async with SQLiteKeyStore(str(path)) as key_store:
        assert list(await key_store.load("s")) == [1]
