"""Closing an SQLite checkpoint store while a call of its is under way.

``close()`` took the store's thread lock on the event loop's own thread: with a save
waiting in its worker thread for a write lock another connection held (up to the busy
timeout, 10 s by default), the whole event loop stood still until that save gave up.
It now waits for the call under way without blocking the loop, then closes.
"""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from pepperpy.event import SQLiteCheckpointStore, StoreError
from tests.helpers import eventually


async def test_close_waits_for_a_save_under_way_without_blocking_the_loop(
    tmp_path: Path,
) -> None:
    path = tmp_path / "events.db"
    store = SQLiteCheckpointStore(path)
    store._busy_timeout = 5.0  # the save waits for the other writer past the checks below
    await store.save("c", 1, None, previous=None)  # the table is there, the file open
    with closing(sqlite3.connect(path, isolation_level=None)) as other:
        other.execute("BEGIN IMMEDIATE")  # another writer holds the write lock
        save = asyncio.ensure_future(store.save("c", 2, None, previous=1))
        await eventually(store._lock.locked)  # the save waits for it, in its thread
        closing_store = asyncio.ensure_future(store.close())
        await asyncio.sleep(0)  # close() runs up to where it waits
        # the old close() held the loop right here until the save's busy timeout ran out
        assert not closing_store.done() and not save.done()
        other.execute("ROLLBACK")
        await asyncio.wait_for(closing_store, 20)
        await asyncio.wait_for(save, 20)  # it went in, before the store closed
    try:
        saved = await store.load("c")  # still usable: it opens the file again
        assert saved is not None and saved.position == 2
    finally:
        await store.close()


async def test_a_close_cancelled_while_it_waits_still_closes(tmp_path: Path) -> None:
    """Cancelling close() (a shutdown's timeout) stops only the wait: the connection is
    closed once the call under way is done, and the store opens it again on next use."""
    path = tmp_path / "events.db"
    store = SQLiteCheckpointStore(path)
    store._busy_timeout = 5.0
    await store.save("c", 1, None, previous=None)
    with closing(sqlite3.connect(path, isolation_level=None)) as other:
        other.execute("BEGIN IMMEDIATE")
        save = asyncio.ensure_future(store.save("c", 2, None, previous=1))
        await eventually(store._lock.locked)
        closing_store = asyncio.ensure_future(store.close())
        await asyncio.sleep(0)
        closing_store.cancel()
        with pytest.raises(asyncio.CancelledError):
            await closing_store
        other.execute("ROLLBACK")
        await asyncio.wait_for(save, 20)
    await eventually(lambda: store._db is None)  # closed, in the background
    try:
        saved = await store.load("c")
        assert saved is not None and saved.position == 2
    finally:
        await store.close()


async def test_close_while_the_save_fails_leaves_the_store_usable(tmp_path: Path) -> None:
    """A save that gives up on the other writer's lock fails as before (nothing
    written), and close() returns once it did."""
    path = tmp_path / "events.db"
    store = SQLiteCheckpointStore(path)
    store._busy_timeout = 0.2
    await store.save("c", 1, None, previous=None)
    with closing(sqlite3.connect(path, isolation_level=None)) as other:
        other.execute("BEGIN IMMEDIATE")
        save = asyncio.ensure_future(store.save("c", 2, None, previous=1))
        await eventually(store._lock.locked)
        await asyncio.wait_for(store.close(), 20)
        with pytest.raises(StoreError, match="nothing of this call was written"):
            await save
        other.execute("ROLLBACK")
    try:
        saved = await store.load("c")
        assert saved is not None and saved.position == 1
    finally:
        await store.close()
