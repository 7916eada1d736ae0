"""The SQLite checkpoint store takes its URL's ``busy_timeout`` and ``synchronous``, as
the event store of that URL does; it waited a fixed 30 seconds for another process's lock
(the event store's default is 10) and always wrote with ``synchronous=FULL``."""

from __future__ import annotations

import pathlib
import sqlite3
import threading
from typing import Any

import pytest

from pepperpy.event import SQLiteCheckpointStore, StoreError
from pepperpy.event._checkpoints import open_checkpoint_store


async def _pragmas(store: Any) -> tuple[int, int]:
    """The store's connection's busy timeout (milliseconds) and synchronous level."""
    found: list[int] = []

    def look(connection: sqlite3.Connection) -> None:
        found.append(connection.execute("PRAGMA busy_timeout").fetchone()[0])
        found.append(connection.execute("PRAGMA synchronous").fetchone()[0])

    await store.prepare(look)
    return found[0], found[1]


async def test_the_url_busy_timeout_and_synchronous_reach_the_checkpoint_store(
    tmp_path: pathlib.Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'events.db'}"
    given = open_checkpoint_store(f"{url}?busy_timeout=2.5&synchronous=NORMAL")
    default = open_checkpoint_store(url)
    direct = SQLiteCheckpointStore(tmp_path / "events.db")
    try:
        assert await _pragmas(given) == (2500, 1)  # NORMAL
        assert await _pragmas(default) == (10_000, 2)  # the store's default; FULL
        assert await _pragmas(direct) == (10_000, 2)
    finally:
        for store in (given, default, direct):
            await store.close()


async def test_a_save_gives_up_after_the_url_busy_timeout(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "events.db"
    checkpoints = open_checkpoint_store(f"sqlite:///{path}?busy_timeout=0.2")
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    release = threading.Timer(5.0, holder.execute, ("ROLLBACK",))  # bounds the old wait
    try:
        await checkpoints.save("p.1", 1, previous=None)
        holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        release.start()
        with pytest.raises(StoreError, match="SQLITE_BUSY") as caught:
            await checkpoints.save("p.1", 2, previous=1)
        assert caught.value.written is False
    finally:
        release.cancel()
        release.join()
        if holder.in_transaction:
            holder.execute("ROLLBACK")
        holder.close()
        await checkpoints.close()
