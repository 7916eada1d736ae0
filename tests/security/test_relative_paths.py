"""A key store and an audit log given a relative SQLite path stay on their file after
``os.chdir()``, as the event store does (tests/store/test_sqlite_relative_path.py).

Both open connections again later (the audit log one for each read, the key store in a
forked child, or after a write found its file read-only), and opened the path as given:
after a change of working directory the key store made a new, empty key file in the new
directory (every stream's data keys gone: its events unreadable), and the audit log
read or failed on whatever ``audit.db`` the new directory held.
"""

from __future__ import annotations

import asyncio
import os
import pathlib

import pytest

from pepperpy.event.security import AuditLog, SQLiteKeyStore
from tests.store.test_fork import in_child

pytestmark = pytest.mark.filterwarnings(
    "ignore:This process .* is multi-threaded:DeprecationWarning"
)


@pytest.fixture
def two_directories(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[pathlib.Path, pathlib.Path]:
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    monkeypatch.chdir(first)
    return first, second


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork() is POSIX only")
async def test_a_key_store_stays_on_its_file(
    two_directories: tuple[pathlib.Path, pathlib.Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = two_directories
    with SQLiteKeyStore("keys.db") as keys:
        assert await keys.save("order.1", 1, "m1", b"wrapped")
        monkeypatch.chdir(second)

        def child() -> dict[int, tuple[str, bytes]]:  # opens a connection of its own
            return asyncio.run(keys.load("order.1"))

        assert in_child(child) == {1: ("m1", b"wrapped")}
        assert await keys.load("order.1") == {1: ("m1", b"wrapped")}
        assert keys.path == str(first / "keys.db")
    assert list(second.iterdir()) == []


def test_an_audit_log_stays_on_its_file(
    two_directories: tuple[pathlib.Path, pathlib.Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = two_directories
    with AuditLog("audit.db") as log:
        log.record("append", "order.1", principal="alice")
        monkeypatch.chdir(second)
        log.record("append", "order.2", principal="alice")
        assert [entry.target for entry in log.entries()] == ["order.1", "order.2"]
        assert log.verify().ok
    assert list(second.iterdir()) == []
    with AuditLog(str(first / "audit.db"), read_only=True) as again:
        assert [entry.target for entry in again.entries()] == ["order.1", "order.2"]
