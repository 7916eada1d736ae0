"""A backup restored over an open SQLite store: the documented recovery ("close the store
and open it again") must give the backup, intact.

SQLite finds the ``-wal`` by the file's name: the old file's write-ahead log left at the
path was applied to the restored file at the next open (the restore undone, or the file
corrupted once the log had wrapped).
"""

from __future__ import annotations

import pathlib
import shutil
import sqlite3

import pytest

from pepperpy.event import Event, EventStore, StoreError
from pepperpy.event._checkpoints import open_checkpoint_store


def _integrity(path: pathlib.Path) -> list[tuple[str]]:
    connection = sqlite3.connect(path)
    try:
        return connection.execute("PRAGMA integrity_check").fetchall()
    finally:
        connection.close()


async def _backup_of_three(path: pathlib.Path, backup: pathlib.Path) -> None:
    async with EventStore(f"sqlite:///{path}") as store:
        for n in range(3):
            await store.append("kept.1", Event("t.x", {"n": n, "pad": "b" * 3000}))
    shutil.copy(path, backup)  # closed cleanly: the file alone holds everything


@pytest.mark.parametrize("appended", [37, 400])  # 400 wraps the log (a checkpoint and more)
async def test_close_and_open_again_after_a_restore_gives_the_backup(
    tmp_path: pathlib.Path, appended: int
) -> None:
    path, backup = tmp_path / "events.db", tmp_path / "backup.db"
    await _backup_of_three(path, backup)
    store = EventStore(f"sqlite:///{path}")
    try:
        for n in range(appended):
            await store.append("later.1", Event("t.x", {"n": n, "pad": "n" * 3000}))
        backup.replace(path)  # the restore, renamed over the open file
        with pytest.raises(StoreError, match="removed or replaced"):
            await store.append("later.1", Event("t.x"))
    finally:
        await store.close()
    assert _integrity(path) == [("ok",)]
    async with EventStore(f"sqlite:///{path}") as reopened:
        assert [e.stream for e in await reopened.read_all(0)] == ["kept.1"] * 3
        await reopened.append("after.1", Event("t.x"))
    assert _integrity(path) == [("ok",)]


async def test_a_restore_while_the_store_is_idle_then_close_and_open_again(
    tmp_path: pathlib.Path,
) -> None:
    """Nothing is written after the restore, so only close() can see it."""
    path, backup = tmp_path / "events.db", tmp_path / "backup.db"
    await _backup_of_three(path, backup)
    async with EventStore(f"sqlite:///{path}") as store:
        for n in range(20):
            await store.append("later.1", Event("t.x", {"n": n}))
        backup.replace(path)
    async with EventStore(f"sqlite:///{path}") as reopened:
        assert [e.stream for e in await reopened.read_all(0)] == ["kept.1"] * 3


async def test_the_checkpoint_store_refuses_a_replaced_file_and_lets_go_of_its_log(
    tmp_path: pathlib.Path,
) -> None:
    path, backup = tmp_path / "events.db", tmp_path / "backup.db"
    url = f"sqlite:///{path}"
    await _backup_of_three(path, backup)
    checkpoints = open_checkpoint_store(url)
    try:
        await checkpoints.save("p.1", 1, previous=None)
        backup.replace(path)
        with pytest.raises(StoreError, match="removed or replaced"):
            await checkpoints.save("p.1", 2, previous=1)
        with pytest.raises(StoreError, match="removed or replaced"):
            await checkpoints.load("p.1")
    finally:
        await checkpoints.close()
    assert _integrity(path) == [("ok",)]
    reopened = open_checkpoint_store(url)
    try:
        assert await reopened.load("p.1") is None  # the backup had no checkpoint
        await reopened.save("p.1", 5, previous=None)
    finally:
        await reopened.close()
    async with EventStore(url) as store:
        assert [e.stream for e in await store.read_all(0)] == ["kept.1"] * 3


async def test_the_old_file_moved_aside_gets_the_old_log_and_stays_whole(
    tmp_path: pathlib.Path,
) -> None:
    path, backup, aside = tmp_path / "events.db", tmp_path / "backup.db", tmp_path / "aside.db"
    await _backup_of_three(path, backup)
    async with EventStore(f"sqlite:///{path}") as store:
        for n in range(20):
            await store.append("later.1", Event("t.x", {"n": n}))
        path.replace(aside)  # the old file kept, under another name
        backup.replace(path)
    assert _integrity(aside) == [("ok",)]
    async with EventStore(f"sqlite:///{aside}") as old:
        assert [e.stream for e in await old.read_all(0)] == ["kept.1"] * 3 + ["later.1"] * 20
    async with EventStore(f"sqlite:///{path}") as restored:
        assert [e.stream for e in await restored.read_all(0)] == ["kept.1"] * 3
