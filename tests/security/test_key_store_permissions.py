"""A new SQLite key file, and the -wal and -shm files SQLite makes beside it, can be
read by their owner only: a copy taken by another user of the machine before a shred
would read the shredded data once the master key leaks."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

from pepperpy.event import EventStore
from pepperpy.event.security import KeyRing, SQLiteKeyStore, StreamEncryption

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_a_new_key_file_and_its_wal_are_private(tmp_path: Path) -> None:
    umask = os.umask(0o022)  # the usual default: other files are made 0644
    try:
        keys = tmp_path / "keys.db"
        async with (
            SQLiteKeyStore(str(keys)) as key_store,
            EventStore(
                f"sqlite:///{tmp_path / 'events.db'}",
                encryption=StreamEncryption(KeyRing.generate(), key_store),
            ) as store,
        ):
            await store.append("user.9", {"type": "user.created", "data": {"ssn": "x"}})
            found = {path.name: mode(path) for path in tmp_path.glob("keys.db*")}
            assert {"keys.db", "keys.db-wal"} <= set(found)
            assert set(found.values()) == {0o600}, found
            assert mode(tmp_path / "events.db") == 0o644  # the event store's as before
    finally:
        os.umask(umask)


async def test_an_existing_key_file_keeps_its_mode(tmp_path: Path) -> None:
    keys = tmp_path / "keys.db"
    keys.touch()
    keys.chmod(0o640)  # the owner's choice (a group that backs it up, say)
    async with SQLiteKeyStore(str(keys)) as key_store:
        await key_store.load("user.9")
    assert mode(keys) == 0o640
