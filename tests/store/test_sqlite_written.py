"""``StoreError.written`` is False wherever SQLite knows nothing of the call was written.

It was None on two of them: a write refused because the file was removed or replaced
(rolled back before its ``COMMIT``), and the first append of a store whose opening
failed (another process holding the lock).
"""

from __future__ import annotations

import pathlib
import sqlite3

import pytest

from pepperpy.event import Event, EventStore, StoreError
from pepperpy.event._checkpoints import open_checkpoint_store


@pytest.mark.parametrize("how", ["removed", "replaced"])
async def test_a_write_refused_for_a_removed_or_replaced_file_wrote_nothing(
    tmp_path: pathlib.Path, how: str
) -> None:
    path = tmp_path / "events.db"
    store = EventStore(f"sqlite:///{path}")
    checkpoints = open_checkpoint_store(f"sqlite:///{path}")
    try:
        await store.append("a.1", Event("t.x"))
        await checkpoints.save("p.1", 1, previous=None)
        if how == "removed":
            path.unlink()
        else:
            other = tmp_path / "other.db"
            sqlite3.connect(other).close()
            other.replace(path)
        with pytest.raises(StoreError, match="removed or replaced") as appended:
            await store.append("a.1", Event("t.x"))
        assert appended.value.written is False
        assert "nothing of this call was written" in str(appended.value)
        with pytest.raises(StoreError, match="removed or replaced") as deleted:
            await store.delete_stream("a.1")
        assert deleted.value.written is False
        with pytest.raises(StoreError, match="removed or replaced") as saved:
            await checkpoints.save("p.1", 2, previous=1)
        assert saved.value.written is False
        assert "nothing of this call was written" in str(saved.value)
    finally:
        await checkpoints.close()
        await store.close()


async def test_the_first_append_of_a_store_that_could_not_open_wrote_nothing(
    tmp_path: pathlib.Path,
) -> None:
    path = tmp_path / "events.db"
    holder = sqlite3.connect(path, isolation_level=None)  # another writer holds the lock
    try:
        holder.execute("PRAGMA journal_mode=WAL")
        holder.execute("BEGIN IMMEDIATE")
        holder.execute("CREATE TABLE elsewhere (x)")
        store = EventStore(f"sqlite:///{path}?busy_timeout=0.1")
        try:
            with pytest.raises(StoreError, match="SQLITE_BUSY") as caught:
                await store.append("a.1", Event("t.x"))
            assert caught.value.written is False
            assert "nothing of this call was written" in str(caught.value)
            assert isinstance(caught.value.__cause__, sqlite3.OperationalError)
            holder.execute("ROLLBACK")
            await store.append("a.1", Event("t.x"))  # the same store opens it now
            assert [e.stream for e in await store.read_all(0)] == ["a.1"]
        finally:
            await store.close()
    finally:
        holder.close()
