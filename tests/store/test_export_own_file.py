"""An export to the source store's own SQLite file replaced the database with its export.

``export events.db --store sqlite:///events.db`` (FILE and --store swapped in mind, a
typo away) wrote the export through ``events.db.partial`` and renamed it over the
database: the snapshots and checkpoints kept there were gone, and the file was no
event store any more. Such a path (by any name: a link, a hard link; or the store's
``-wal``) is now refused before anything is written.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pepperpy.event import ConfigurationError, Event, EventStore, export_store
from tests.cli.conftest import command_env


async def _store(path: Path) -> None:
    async with EventStore(f"sqlite:///{path}") as store:
        await store.append("a.1", [Event("t.x", {"n": n}) for n in range(3)])
        await store.save_snapshot("a.1", {"total": 3}, 2)


async def _intact(path: Path) -> None:
    async with EventStore(f"sqlite:///{path}?create=0") as store:
        assert [event.data["n"] async for event in store.read_all()] == [0, 1, 2]
        snapshot = await store.load_snapshot("a.1")
        assert snapshot is not None and snapshot.version == 2


@pytest.mark.parametrize("name", ["itself", "symlink", "hardlink", "wal"])
async def test_an_export_over_the_source_database_is_refused(tmp_path: Path, name: str) -> None:
    database = tmp_path / "events.db"
    await _store(database)
    target = {
        "itself": database,
        "symlink": tmp_path / "link.jsonl",
        "hardlink": tmp_path / "hard.jsonl",
        "wal": tmp_path / "events.db-wal",
    }[name]
    if name == "symlink":
        target.symlink_to(database)
    if name == "hardlink":
        os.link(database, target)
    async with EventStore(f"sqlite:///{database}") as store:
        await store.head()  # opened: its -wal is there
        with pytest.raises(ConfigurationError) as raised:
            await export_store(store, target)
    kind = "-wal" if name == "wal" else "database"
    assert str(raised.value) == (
        f"{str(target)!r} is the source store's own SQLite {kind} file: an export there "
        "would overwrite the store; give the path of another file"
    )
    assert not list(tmp_path.glob("*.partial"))
    await _intact(database)


async def test_an_export_beside_the_database_is_written(tmp_path: Path) -> None:
    database = tmp_path / "events.db"
    await _store(database)
    report = await export_store(f"sqlite:///{database}", tmp_path / "events.jsonl")
    assert report.copied == 3
    await _intact(database)


async def test_the_command_refuses_it_in_one_line(tmp_path: Path) -> None:
    await _store(tmp_path / "events.db")
    done = subprocess.run(
        [sys.executable, "-m", "pepperpy.event", "export", "events.db"]
        + ["--store", "sqlite:///events.db"],
        cwd=tmp_path,
        env=command_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert done.stderr.splitlines() == [
        "pepperpy-event: error: 'events.db' is the source store's own SQLite database file: "
        "an export there would overwrite the store; give the path of another file"
    ]
    await _intact(tmp_path / "events.db")
