"""Closing the audit log and the key store: nothing is accepted, or written unaudited, after."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from pepperpy.event import ClosedError, EventStore
from pepperpy.event.security import (
    AccessControl,
    AuditLog,
    KeyRing,
    SQLiteKeyStore,
    StreamEncryption,
)


def _rows(path: Path) -> int:
    with closing(sqlite3.connect(path)) as db, db:
        count: int = db.execute("SELECT count(*) FROM audit_log").fetchone()[0]
    return count


@pytest.mark.parametrize("file_backed", [True, False], ids=["file", "memory"])
async def test_a_closed_audit_log_refuses_entries(tmp_path: Path, file_backed: bool) -> None:
    path = tmp_path / "audit.db"
    log = AuditLog(str(path) if file_backed else None)
    log.record("append", "orders.1")
    log.close()
    log.close()  # idempotent
    assert log.closed
    with pytest.raises(ClosedError, match="closed"):
        log.record("delete", "orders.2")
    with pytest.raises(ClosedError, match="closed"):
        await log.arecord("append", "orders.3")
    if file_backed:
        assert _rows(path) == 1
        with pytest.raises(ClosedError):  # not the empty in-memory list, "ok"
            log.verify()
        reopened = AuditLog(str(path), read_only=True)
        assert reopened.verify().checked == 1
        reopened.close()
    else:  # a memory log keeps its entries
        assert log.verify().checked == 1
        assert [entry.target for entry in log.entries()] == ["orders.1"]


@pytest.mark.parametrize("url", ["memory://", "sqlite"])
async def test_a_store_whose_audit_log_is_closed_writes_nothing(tmp_path: Path, url: str) -> None:
    path = tmp_path / "audit.db"
    log = AuditLog(str(path))
    store_url = f"sqlite:///{tmp_path / 'events.db'}" if url == "sqlite" else url
    crypto = StreamEncryption(KeyRing.generate())
    async with EventStore(store_url, audit=log, encryption=crypto) as store:
        await store.append("orders.1", {"type": "order.placed", "data": {}})
        log.close()
        with pytest.raises(ClosedError, match="audit log is closed"):
            await store.append("orders.1", {"type": "order.placed", "data": {"n": 2}})
        with pytest.raises(ClosedError, match="audit log is closed"):
            await store.delete_stream("orders.1")
        with pytest.raises(ClosedError, match="audit log is closed"):
            await store.shred_stream("orders.1")
        events = await store.get_stream("orders.1")
        assert [event.data for event in events] == [{}]  # not written, not deleted, not shredded
    assert _rows(path) == 1


def test_rule_changes_are_refused_when_the_audit_log_is_closed() -> None:
    log = AuditLog()
    acl = AccessControl(audit=log)
    rule = acl.allow("#", "read", "orders.#")
    log.close()
    with pytest.raises(ClosedError):
        acl.deny("svc.x", "read", "orders.#")
    with pytest.raises(ClosedError):
        acl.remove(rule)
    assert acl.is_allowed("svc.x", "read", "orders.1")  # neither change happened
    assert len(log.entries()) == 1


async def test_audit_log_closes_on_leaving_with_blocks(tmp_path: Path) -> None:
    with AuditLog(str(tmp_path / "a.db")) as log:
        log.record("append", "orders.1")
    assert log.closed
    async with AuditLog(str(tmp_path / "b.db")) as alog:
        await alog.arecord("append", "orders.1")
    assert alog.closed
    with pytest.raises(ClosedError):
        await alog.arecord("append", "orders.2")
    assert _rows(tmp_path / "a.db") == _rows(tmp_path / "b.db") == 1


async def test_sqlite_key_store_closes_on_leaving_with_blocks(tmp_path: Path) -> None:
    async with SQLiteKeyStore(str(tmp_path / "keys.db")) as keys:
        assert await keys.save("user.1", 1, "m", b"wrapped")
    with pytest.raises(ClosedError, match="closed"):
        await keys.load("user.1")
    await keys.close()  # idempotent
    with SQLiteKeyStore(str(tmp_path / "keys.db")) as again:
        assert await again.load("user.1") == {1: ("m", b"wrapped")}
    with pytest.raises(ClosedError):
        await again.streams()
