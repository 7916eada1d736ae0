"""A write whose ROLLBACK fails too raises the write's own error.

``_sqlite.write_transaction`` is the one ``BEGIN IMMEDIATE`` / ``COMMIT`` / quiet
``ROLLBACK`` of the SQLite files the library keeps beside the store: checkpoints and the
audit log. Their copies differed: the checkpoint store rolled back loudly, so when the
``ROLLBACK`` after a failed write failed too (an I/O error), its error replaced the
write's ("database or disk is full", which names the cause); the audit log rolled back
quietly, which both do now.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from pepperpy.event import SQLiteCheckpointStore, StoreError
from pepperpy.event.security import AuditLog


class FullDisk:
    """A connection whose writes (``INSERT``) fail as on a full disk, and whose
    ``ROLLBACK`` then fails too."""

    def __init__(self, real: sqlite3.Connection) -> None:
        self.real = real
        self.rollbacks = 0

    @property
    def in_transaction(self) -> bool:
        return self.real.in_transaction

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if sql.startswith("INSERT"):
            raise sqlite3.OperationalError("database or disk is full")
        if sql == "ROLLBACK":
            self.rollbacks += 1
            raise sqlite3.OperationalError("disk I/O error")
        return self.real.execute(sql, *args)


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
