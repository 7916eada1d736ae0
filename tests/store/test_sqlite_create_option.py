"""``sqlite:///path?create=0``: open an existing event store only, never make one."""

from __future__ import annotations

import hashlib
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from pepperpy.event import ConfigurationError, EventReplay, EventStore, StoreError
from pepperpy.event._checkpoints import SQLiteCheckpointStore, open_checkpoint_store
from pepperpy.event.store.sqlite import SQLiteBackend, parse_url


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    ("value", "create"),
    [
        ("0", False),
        ("false", False),
        ("False", False),
        ("no", False),
        ("NO", False),
        ("1", True),
        ("true", True),
        ("TRUE", True),
        ("yes", True),
    ],
)
def test_the_create_option_is_read_from_the_url(tmp_path: Path, value: str, create: bool) -> None:
    backend = EventStore(f"sqlite:///{tmp_path}/events.db?create={value}").backend
    assert isinstance(backend, SQLiteBackend)
    assert backend.create is create
    checkpoints = open_checkpoint_store(f"sqlite:///{tmp_path}/events.db?create={value}")
    assert isinstance(checkpoints, SQLiteCheckpointStore)
    assert checkpoints.create is create


def test_create_defaults_to_true_and_combines_with_the_other_options(tmp_path: Path) -> None:
    url = f"SQLite:///{tmp_path}/e.db?synchronous=normal&create=0&busy_timeout=2.5"
    assert parse_url(url) == (f"{tmp_path}/e.db", "NORMAL", 2.5, False)
    assert parse_url(f"sqlite:///{tmp_path}/e.db") == (f"{tmp_path}/e.db", "FULL", 10.0, True)


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("create=maybe", "create='maybe': use 1 or 0"),
        ("create=", "create='': use 1 or 0"),
        ("create=2", "create='2': use 1 or 0"),
        ("create=off", "create='off': use 1 or 0"),
        ("create=0&create=1", "'create' is given twice"),
        ("creat=0", "unknown SQLite URL option 'creat'"),
        ("synchronous=OFF", "synchronous='OFF': use FULL, EXTRA or NORMAL"),
        ("busy_timeout=soon", "busy_timeout must be a finite number of seconds >= 0, got 'soon'"),
    ],
)
def test_a_bad_option_is_named(tmp_path: Path, query: str, named: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        EventStore(f"sqlite:///{tmp_path}/events.db?{query}")
    assert named in str(caught.value)
    assert not (tmp_path / "events.db").exists()


async def test_create_0_refuses_a_missing_file_and_does_not_make_it(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    async with EventStore(f"sqlite:///{path}?create=0") as store:
        with pytest.raises(StoreError, match="no event store at"):
            await store.append("user.1", {"type": "user.created"})
        with pytest.raises(StoreError, match="no event store at"):
            await store.get_stream("user.1")
    assert not path.exists()


async def test_create_0_refuses_a_foreign_database_and_leaves_it_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with closing(sqlite3.connect(path)) as other, other:
        other.execute("CREATE TABLE notes (text TEXT)")
        other.execute("INSERT INTO notes VALUES ('keep me')")
    other.close()
    before = sha256(path)
    async with EventStore(f"sqlite:///{path}?create=false") as store:
        with pytest.raises(StoreError, match=r"is not an event store .* left as it is"):
            await store.append("user.1", {"type": "user.created"})
    assert sha256(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.db"]


async def test_create_0_opens_an_existing_store_for_reading_and_writing(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    async with EventStore(f"sqlite:///{path}") as store:
        await store.append("user.1", {"type": "user.created"})
    async with EventStore(f"sqlite:///{path}?create=0") as store:
        await store.append("user.1", {"type": "user.renamed"})
        assert [e.type for e in await store.get_stream("user.1")] == [
            "user.created",
            "user.renamed",
        ]


async def test_a_replay_with_checkpoints_does_not_make_the_store_either(tmp_path: Path) -> None:
    """The replay's checkpoint table goes into the store's file: not into a new one."""
    path = tmp_path / "events.db"
    async with EventStore(f"sqlite:///{path}?create=0") as store:
        async with EventReplay(store) as replay:
            replay.handle("#", lambda event: None)
            with pytest.raises(StoreError, match="no event store at"):
                await replay.replay_all(checkpoint="nightly")
    assert not path.exists()
    path.write_bytes(b"")  # an empty file is not a store either
    async with EventStore(f"sqlite:///{path}?create=0") as store:
        async with EventReplay(store) as replay:
            with pytest.raises(StoreError, match="an empty file"):
                await replay.replay_all(checkpoint="nightly")
    assert path.read_bytes() == b""


async def test_checkpoints_of_a_create_0_url_need_an_existing_store(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    async with open_checkpoint_store(f"sqlite:///{path}?create=0") as checkpoints:
        with pytest.raises(StoreError, match="no event store at"):
            await checkpoints.load("nightly")
    assert not path.exists()
    async with EventStore(f"sqlite:///{path}") as store:
        await store.append("user.1", {"type": "user.created"})
    async with open_checkpoint_store(f"sqlite:///{path}?create=0") as checkpoints:
        await checkpoints.save("nightly", 0, {"n": 1}, previous=None)
        saved = await checkpoints.load("nightly")
        assert saved is not None and saved.state == {"n": 1}
