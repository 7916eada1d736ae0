"""After a shred, the old wrapped data key is in none of the key store's files.

SQLiteKeyStore used to leave the page that held the key in its ``-wal`` file (and the
key's bytes in freed space) for as long as it stayed open; whoever held the master key
could unwrap it from there and read the "erased" events.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from pathlib import Path

import pytest

from pepperpy.event.security import KeyRing, SQLiteKeyStore, StreamEncryption


def on_disk(directory: Path) -> bytes:
    """Every byte of every file in ``directory`` (the database, its -wal and -shm)."""
    return b"".join(path.read_bytes() for path in sorted(directory.iterdir()))


async def keys_for_fifty_streams(directory: Path) -> tuple[StreamEncryption, bytes]:
    keys = SQLiteKeyStore(str(directory / "keys.db"))
    crypto = StreamEncryption(KeyRing.generate(), keys)
    for i in range(50):
        await crypto.encrypt(f"user.{i}", "e1", b'{"ssn": "x"}')
    wrapped = (await keys.load("user.7"))[1][1]
    assert wrapped in on_disk(directory)  # the check below can see it
    return crypto, wrapped


async def test_a_shredded_key_leaves_no_copy_in_the_files_while_open(tmp_path: Path) -> None:
    crypto, wrapped = await keys_for_fifty_streams(tmp_path)
    keys = crypto.key_store
    assert isinstance(keys, SQLiteKeyStore) and keys._db is not None
    # freed space zeroed too (some sqlite3 builds default to it, others do not)
    assert keys._db.execute("PRAGMA secure_delete").fetchone() == (1,)
    assert await crypto.shred("user.7") is True
    assert await crypto.key_store.load("user.7") == {1: ("", b"")}
    assert wrapped not in on_disk(tmp_path)  # not in keys.db, -wal nor -shm
    assert (await crypto.key_store.load("user.8"))[1][1] in on_disk(tmp_path)
    await crypto.key_store.close()


async def test_a_deleted_key_leaves_no_copy_in_the_files_while_open(tmp_path: Path) -> None:
    crypto, wrapped = await keys_for_fifty_streams(tmp_path)
    assert await crypto.key_store.delete("user.7") == 1
    assert wrapped not in on_disk(tmp_path)
    await crypto.key_store.close()


async def test_a_reader_keeping_the_wal_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    crypto, wrapped = await keys_for_fifty_streams(tmp_path)
    keys = crypto.key_store
    assert isinstance(keys, SQLiteKeyStore) and keys._db is not None
    keys._db.execute("PRAGMA busy_timeout=50")  # do not wait 5 s for the reader
    reader = sqlite3.connect(tmp_path / "keys.db", isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM data_keys").fetchone()  # holds a snapshot
    with caplog.at_level(logging.WARNING, logger="pepperpy.event.security"):
        assert await crypto.shred("user.7") is True
    assert "kept the WAL from being truncated" in caplog.text
    assert "keys.db-wal" in caplog.text
    reader.execute("ROLLBACK")
    reader.close()
    await crypto.shred("user.8")  # the next shred truncates the WAL, both keys leave
    assert wrapped not in on_disk(tmp_path)
    assert os.path.getsize(tmp_path / "keys.db-wal") == 0
    await keys.close()
