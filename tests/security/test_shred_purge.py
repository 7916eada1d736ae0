"""A reader of the key store file never stalls a shred (second review, finding 2).

SQLiteKeyStore ran ``PRAGMA wal_checkpoint(TRUNCATE)`` after every tombstone, holding
the lock every key store call of the process takes. The checkpoint waits for the file's
readers through the busy handler, so one open read transaction elsewhere (Litestream, a
backup, the sqlite3 shell) made each shredded version wait out the busy timeout, and
every encrypt() of any stream waited with it. Now a shred purges once, never waits, warns
once if a reader is in the way, and the purge is retried at the next write or at close.

The key stores here wait 30 s for a lock, so a shred that waited for the reader would not
end within the 10 s these tests give it while the reader is still there.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from pepperpy.event.security import KeyRing, SQLiteKeyStore, StreamEncryption

T = TypeVar("T")
BOUND = 10.0  # far below the busy timeout: finishing within it means it did not wait


class Patient(SQLiteKeyStore):
    """A key store whose connection waits 30 s for a lock (the default is 5 s)."""

    def _open(self) -> sqlite3.Connection:
        connection = super()._open()
        connection.execute("PRAGMA busy_timeout=30000")
        return connection


def on_disk(directory: Path) -> bytes:
    """Every byte of every file in ``directory`` (the database, its -wal and -shm)."""
    return b"".join(path.read_bytes() for path in sorted(directory.iterdir()))


def wal(directory: Path) -> Path:
    return directory / "keys.db-wal"


@pytest.fixture
def reader(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    """A connection that will hold a read transaction on the key store file."""
    connection = sqlite3.connect(tmp_path / "keys.db", isolation_level=None)
    yield connection
    if connection.in_transaction:
        connection.execute("ROLLBACK")
    connection.close()


async def three_versions(directory: Path) -> tuple[StreamEncryption, Patient, list[bytes]]:
    keys = Patient(str(directory / "keys.db"))
    crypto = StreamEncryption(KeyRing.generate(), keys)
    await crypto.encrypt("user.1", "e1", b'{"ssn": "x"}')
    await crypto.rotate_stream("user.1")
    await crypto.rotate_stream("user.1")
    rows = await keys.load("user.1")
    assert sorted(rows) == [1, 2, 3]
    return crypto, keys, [wrapped for _, wrapped in rows.values()]


def hold_a_read_transaction(reader: sqlite3.Connection) -> None:
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM data_keys").fetchone()  # holds a snapshot


async def while_read(reader: sqlite3.Connection, work: Awaitable[T]) -> T:
    """Run ``work`` with ``reader`` in a read transaction, which ends afterwards.

    ``work`` must be over while the reader still holds its transaction (within BOUND,
    far below the busy timeout). The reader ends afterwards in any case, so work that
    waits for it (the old code) still finishes and the test fails instead of hanging.
    """
    hold_a_read_transaction(reader)
    task = asyncio.ensure_future(work)
    try:
        done, _ = await asyncio.wait({task}, timeout=BOUND)
        assert task in done, "it waited for the reader (busy timeout) under the lock"
    finally:
        assert reader.in_transaction  # the reader was there all along
        reader.execute("ROLLBACK")
        result = await task
    return result


async def shred_while_read(crypto: StreamEncryption, reader: sqlite3.Connection) -> bool:
    """Shred user.1 with ``reader`` in a read transaction; then encrypt another stream."""

    async def shred_then_encrypt() -> bool:
        shredded = await crypto.shred("user.1")
        await crypto.encrypt("user.2", "e1", b'{"ssn": "y"}')  # a write: tries again
        return shredded

    return await while_read(reader, shred_then_encrypt())


def warnings_about_the_wal(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "pepperpy.event.security"
        and record.levelno == logging.WARNING
        and "keys.db-wal" in record.getMessage()
    ]


async def test_a_reader_does_not_stall_the_shred_and_the_next_write_purges(
    tmp_path: Path, reader: sqlite3.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    crypto, keys, wrapped = await three_versions(tmp_path)
    with caplog.at_level(logging.INFO, logger="pepperpy.event.security"):
        assert await shred_while_read(crypto, reader) is True
        assert await keys.load("user.1") == {v: ("", b"") for v in (1, 2, 3)}
        # one warning for the three versions and the write after, naming the file
        (warning,) = warnings_about_the_wal(caplog)
        assert "kept the WAL from being truncated" in warning
        assert str(tmp_path / "keys.db") in warning
        # the reader kept the old frames, keys included, in the WAL
        assert all(key in wal(tmp_path).read_bytes() for key in wrapped)

        # the reader is gone: the next write truncates the WAL
        await crypto.encrypt("user.3", "e1", b'{"ssn": "z"}')
    assert wal(tmp_path).stat().st_size == 0
    assert not any(key in on_disk(tmp_path) for key in wrapped)
    assert "the WAL is truncated" in caplog.text
    assert len(warnings_about_the_wal(caplog)) == 1
    # the checkpoint's busy timeout of 0 did not stay on the connection
    assert keys._db is not None
    assert keys._db.execute("PRAGMA busy_timeout").fetchone() == (30000,)
    # every other stream is intact
    for stream in ("user.2", "user.3"):
        assert sorted(await keys.load(stream)) == [1]
        assert (await keys.load(stream))[1][0] == "k1"
    await keys.close()


async def test_after_the_reader_closing_the_key_store_purges(
    tmp_path: Path, reader: sqlite3.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    crypto, keys, wrapped = await three_versions(tmp_path)
    # the reader's connection stays open, so closing the key store does not checkpoint
    # the WAL by itself (SQLite does that on closing the last connection only)
    with caplog.at_level(logging.WARNING, logger="pepperpy.event.security"):
        await shred_while_read(crypto, reader)
        assert all(key in wal(tmp_path).read_bytes() for key in wrapped)
        await keys.close()  # no write in between: the close purges
    assert len(warnings_about_the_wal(caplog)) == 1  # none at close: it worked
    assert not any(key in on_disk(tmp_path) for key in wrapped)


async def test_closing_with_the_reader_still_there_says_the_key_stays(
    tmp_path: Path, reader: sqlite3.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    crypto, keys, _ = await three_versions(tmp_path)

    async def shred_then_close() -> bool:
        shredded = await crypto.shred("user.1")
        await keys.close()  # no wait either
        return shredded

    with caplog.at_level(logging.WARNING, logger="pepperpy.event.security"):
        assert await while_read(reader, shred_then_close()) is True
    first, at_close = warnings_about_the_wal(caplog)
    assert "kept the WAL from being truncated" in first
    assert "closed while another connection" in at_close


async def test_a_delete_with_a_reader_does_not_wait_either(
    tmp_path: Path, reader: sqlite3.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    crypto, keys, wrapped = await three_versions(tmp_path)
    with caplog.at_level(logging.WARNING, logger="pepperpy.event.security"):
        assert await while_read(reader, keys.delete("user.1")) == 3
    assert len(warnings_about_the_wal(caplog)) == 1
    await crypto.encrypt("user.2", "e1", b"{}")  # the next write purges
    assert not any(key in on_disk(tmp_path) for key in wrapped)
    await keys.close()
