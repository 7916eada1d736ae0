"""Every error of SQLite's, from any SQLite file the library keeps, names the file (its
absolute path), SQLite's message and code, and the likely cause.

One function words them (``_sqlite_schema.named_error``), for the event store's writer,
its readers and its check of an existing file, the checkpoint store
(``tests/replay/test_checkpoint_unwritable.py``) and the key store. Before, the key store
said only "the key store '...' failed: <SQLite's message>", without code or cause (and
raised a raw ``sqlite3`` error when its file could not be opened), the check of a ``create=0`` file
gave no code, and a store opened with a relative path named it relative.
"""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest

from pepperpy.event import EncryptionError, EventStore, StoreError
from pepperpy.event.security import SQLiteKeyStore
from tests.store.unwritable import DROP_WRITE_OVERRIDE, make_writable, run_script


def test_a_key_store_that_cannot_open_its_file_says_which_and_why(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "keys.db"
    with pytest.raises(EncryptionError) as caught:
        SQLiteKeyStore(str(path))
    message = str(caught.value)
    assert message.startswith(f"the key store {str(path)!r} failed: unable to open"), message
    assert "(SQLITE_CANTOPEN)" in message
    assert f"its directory {str(path.parent)!r} does not exist" in message
    assert isinstance(caught.value.__cause__, sqlite3.OperationalError)


_KEYS_READ_ONLY = (
    DROP_WRITE_OVERRIDE
    + """
import asyncio, json, os, sys
from pepperpy.event import EncryptionError
from pepperpy.event.security import SQLiteKeyStore

directory = sys.argv[1]
path = os.path.join(directory, "keys.db")
if sys.argv[2] == "prepare":
    async def prepare():
        async with SQLiteKeyStore(path) as keys:
            await keys.save("s", 1, "k1", b"wrapped")
    asyncio.run(prepare())
    print(json.dumps({}))
    sys.exit()

drop_write_override()
report = {}

async def main():
    keys = SQLiteKeyStore(path)
    try:
        await keys.save("t", 1, "k1", b"other")
        report["save"] = "saved"
    except Exception as exc:
        report["save"] = {"type": type(exc).__name__, "message": str(exc)}
    report["load"] = sorted(await keys.load("s"))
    os.chmod(directory, 0o755)
    for name in os.listdir(directory):
        os.chmod(os.path.join(directory, name), 0o644)
    report["again"] = await keys.save("t", 1, "k1", b"other")
    await keys.close()

asyncio.run(main())
print(json.dumps(report))
"""
)


@pytest.mark.skipif(sys.platform != "linux", reason="capset")
def test_a_key_store_on_a_read_only_file_names_it_and_writes_once_it_is_writable(
    tmp_path: Path,
) -> None:
    run_script(_KEYS_READ_ONLY, tmp_path, "prepare")
    path = tmp_path / "keys.db"
    path.chmod(0o444)
    try:
        report = run_script(_KEYS_READ_ONLY, tmp_path, "run")
    finally:
        make_writable(tmp_path)
    save = report["save"]
    assert isinstance(save, dict), report
    assert save["type"] == "EncryptionError"
    message = save["message"]
    assert message.startswith(f"the key store {str(path)!r} failed: attempt to write"), message
    assert "(SQLITE_READONLY)" in message
    assert "cannot be written" in message
    assert "nothing of this call was written" in message
    assert report["load"] == [1]  # reads go on
    assert report["again"] is True  # written once the file is writable, without reopening


async def test_a_locked_file_checked_before_opening_names_the_code(tmp_path: Path) -> None:
    """``create=0`` checks the file is an event store first; a lock held elsewhere (a
    connection in exclusive locking mode) fails that check with SQLite's code."""
    path = tmp_path / "events.db"
    async with EventStore(f"sqlite:///{path}") as store:
        await store.append("s", {"type": "t"})
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("PRAGMA locking_mode=EXCLUSIVE")
        other.execute("BEGIN EXCLUSIVE")
        other.execute("DELETE FROM snapshots")  # takes the lock
        async with EventStore(f"sqlite:///{path}?create=0&busy_timeout=0") as store:
            with pytest.raises(StoreError) as caught:
                await store.get_stream("s")
    finally:
        other.execute("ROLLBACK")
        other.close()
    message = str(caught.value)
    assert message.startswith(f"SQLite: {str(path)!r}: database is locked (SQLITE_BUSY)")
    assert "it could not be read" in message


async def test_a_store_opened_by_a_relative_path_names_the_absolute_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Opening (the writer) and reading (a read connection) both say which file."""
    monkeypatch.chdir(tmp_path)
    absolute = repr(str(tmp_path / "events.db"))
    (tmp_path / "events.db").write_bytes(b"not a database" * 20)
    async with EventStore("sqlite:///events.db") as store:
        with pytest.raises(StoreError) as caught:
            await store.get_stream("s")
    assert str(caught.value).startswith(f"SQLite: {absolute}: file is not a database")
    assert "(SQLITE_NOTADB)" in str(caught.value)
    (tmp_path / "events.db").unlink()

    from pepperpy.event.store import _sqlite_connections

    def refused(*args: Any) -> sqlite3.Connection:
        raise sqlite3.OperationalError("unable to open database file")

    async with EventStore("sqlite:///events.db") as store:
        await store.append("s", {"type": "t"})  # the writer is open
        monkeypatch.setattr(_sqlite_connections, "connect", refused)  # read connections fail
        with pytest.raises(StoreError) as caught:
            await store.get_stream("s")
    assert str(caught.value).startswith(f"SQLite: {absolute}: unable to open database file")


def test_a_write_that_left_nothing_says_so_in_written() -> None:
    from pepperpy.event.store._sqlite_schema import NOTHING_WRITTEN, named_error

    failed = sqlite3.OperationalError("disk I/O error")
    written = named_error(failed, "/x/events.db", NOTHING_WRITTEN)
    assert isinstance(written, StoreError) and written.written is False
    unknown = named_error(failed, "/x/events.db", "it could not be read")
    assert isinstance(unknown, StoreError) and unknown.written is None
    assert StoreError("lost").written is None
