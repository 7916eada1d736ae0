"""``sqlite:///path?mode=ro`` and ``?immutable=1``: an existing store opened for reading only.

Promised: every read works (``get_stream``, ``read_all``, ``streams``,
``stream_version``, ``load_snapshot``, ``subscribe``, whose live part sees what another
writer commits, within a poll); appends, deletes and snapshots raise a ``StoreError``
naming the file and the read-only mode, never an error of SQLite's; the database file is
not changed (nor migrated: an older schema is refused, saying to open it writable once);
a missing file is refused and not made. ``immutable=1`` reads a store in a read-only
directory (where ``mode=ro`` cannot, and says so), and refuses a file whose ``-wal``
holds commits it would not see. The checkpoint store of the same URL only reads too, and
the CLI's reading commands take such a URL. Read-only files and directories are tested
in subprocesses that cannot write through permission bits (``tests/store/unwritable.py``).
"""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import sys
from pathlib import Path

import pytest

from pepperpy.event import ConfigurationError, EventReplay, EventStore, StoreError
from pepperpy.event._checkpoints import SQLiteCheckpointStore, open_checkpoint_store
from pepperpy.event.store._sqlite_schema import MIGRATIONS
from pepperpy.event.store.sqlite import SQLiteAccess, SQLiteBackend, parse_access, parse_url
from tests.store.unwritable import DROP_WRITE_OVERRIDE, make_writable, run_script


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def _prepare(path: Path) -> None:
    """A store with two streams and a snapshot, closed (its WAL copied into the file)."""
    async with EventStore(f"sqlite:///{path}") as store:
        await store.append("user.1", [{"type": "created", "data": {"n": 1}}])
        await store.append("user.1", [{"type": "renamed", "data": {"n": 2}}])
        await store.append("order.1", [{"type": "placed", "data": {"n": 3}}])
        await store.save_snapshot("user.1", {"name": "x"}, 1)


@pytest.mark.parametrize(
    ("query", "access"),
    [
        ("mode=ro", (True, False)),
        ("mode=RO", (True, False)),
        ("immutable=1", (True, True)),
        ("mode=ro&immutable=yes", (True, True)),
        ("immutable=0", (False, False)),
        ("mode=ro&create=0", (True, False)),
        ("synchronous=normal", (False, False)),
    ],
)
def test_the_read_only_options_are_read_from_the_url(
    tmp_path: Path, query: str, access: tuple[bool, bool]
) -> None:
    url = f"sqlite:///{tmp_path}/events.db?{query}"
    assert parse_access(url) == SQLiteAccess(*access)
    backend = EventStore(url).backend
    assert isinstance(backend, SQLiteBackend)
    assert (backend.read_only, backend.immutable) == access
    assert backend.create is not access[0] or "create=0" in query  # read-only: never made
    checkpoints = open_checkpoint_store(url)
    assert isinstance(checkpoints, SQLiteCheckpointStore)
    assert (checkpoints.read_only, checkpoints.immutable) == access
    assert parse_url(url).path == f"{tmp_path}/events.db"


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("mode=rw", "mode='rw': the only mode is ro"),
        ("mode=", "mode='': the only mode is ro"),
        ("mode=ro&mode=ro", "'mode' is given twice"),
        ("immutable=maybe", "immutable='maybe': use 1 or 0"),
        ("mode=ro&create=1", "create='1' with mode=ro: a read-only store is never created"),
        ("immutable=1&create=yes", "create='yes' with immutable=1"),
        ("readonly=1", "unknown SQLite URL option 'readonly'"),
    ],
)
def test_a_bad_read_only_option_is_named(tmp_path: Path, query: str, named: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        EventStore(f"sqlite:///{tmp_path}/events.db?{query}")
    assert named in str(caught.value)


async def test_a_read_only_store_reads_everything_and_refuses_every_write(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    await _prepare(path)
    before = sha256(path)
    async with EventStore(f"sqlite:///{path}?mode=ro") as store:
        assert [e.data for e in await store.get_stream("user.1")] == [{"n": 1}, {"n": 2}]
        assert [e.type for e in await store.read_all()] == ["created", "renamed", "placed"]
        assert await store.streams() == ["order.1", "user.1"]
        assert await store.stream_version("user.1") == 1
        assert await store.stream_version("nobody") is None
        snapshot = await store.load_snapshot("user.1")
        assert snapshot is not None and snapshot.state == {"name": "x"}
        subscription = store.subscribe(0, streams="user.#")
        caught_up = [await asyncio.wait_for(anext(subscription), 30) for _ in range(2)]
        assert [e.data for e in caught_up] == [{"n": 1}, {"n": 2}]
        await subscription.aclose()
        refusals = []
        for write in (
            store.append("user.1", {"type": "t"}),
            store.append("new.1", [{"type": "t"}, {"type": "u"}]),
            store.delete_stream("order.1"),
            store.save_snapshot("user.1", {"name": "y"}, 1),
        ):
            with pytest.raises(StoreError) as caught:
                await write
            refusals.append(caught.value)
        for refused in refusals:
            assert str(refused) == (
                f"SQLite: {str(path)!r} is open read-only (mode=ro): appends, deletes and "
                "snapshots are refused; open it without mode=ro to write"
            )
            assert refused.__cause__ is None  # not a failure of SQLite's: never tried
        assert [e.data for e in await store.read_all()] == [{"n": 1}, {"n": 2}, {"n": 3}]
    assert sha256(path) == before


async def test_a_live_read_only_subscription_sees_what_another_writer_commits(
    tmp_path: Path,
) -> None:
    """The writer is another store on the file (its own connections, as another process
    would have): the read-only store learns of its commits by re-reading (a poll)."""
    path = tmp_path / "events.db"
    await _prepare(path)
    async with (
        EventStore(f"sqlite:///{path}?mode=ro") as reader,
        EventStore(f"sqlite:///{path}") as writer,
    ):
        subscription = reader.subscribe(0)
        for _ in range(3):  # caught up
            await asyncio.wait_for(anext(subscription), 30)
        live = asyncio.ensure_future(anext(subscription))
        await writer.append("user.2", {"type": "created", "data": {"n": 4}})
        event = await asyncio.wait_for(live, 30)
        assert (event.stream, event.data, event.global_position) == ("user.2", {"n": 4}, 3)
        await subscription.aclose()


async def test_a_missing_file_is_refused_and_not_made(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    for query in ("mode=ro", "immutable=1"):
        async with EventStore(f"sqlite:///{path}?{query}") as store:
            for call in (store.get_stream("s"), store.streams(), store.append("s", {"type": "t"})):
                with pytest.raises(StoreError, match="no event store at|is open read-only"):
                    await call
            with pytest.raises(StoreError) as caught:
                await store.read_all()
        assert str(caught.value) == (
            f"no event store at {str(path)!r}: a read-only store ({query}) is never "
            "created; check the path"
        )
    assert list(tmp_path.iterdir()) == []


async def test_an_older_schema_is_not_migrated_read_only(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    old = sqlite3.connect(path, isolation_level=None)
    old.execute("PRAGMA journal_mode=WAL")
    old.executescript(MIGRATIONS[0])
    old.execute("PRAGMA user_version = 1")
    old.close()
    before = sha256(path)
    async with EventStore(f"sqlite:///{path}?mode=ro") as store:
        with pytest.raises(StoreError) as caught:
            await store.get_stream("s")
    assert str(caught.value) == (
        f"SQLite: {str(path)!r} has schema version 1 and needs migration to version "
        f"{len(MIGRATIONS)}, which a read-only store (mode=ro) never does: open it "
        "writable once (without mode=ro or immutable=1) to migrate it"
    )
    assert sha256(path) == before
    async with EventStore(f"sqlite:///{path}") as store:  # writable: migrated
        await store.append("s", {"type": "t"})
    async with EventStore(f"sqlite:///{path}?mode=ro") as store:
        assert [e.type for e in await store.get_stream("s")] == ["t"]


async def test_immutable_refuses_a_file_whose_write_ahead_log_holds_commits(
    tmp_path: Path,
) -> None:
    """SQLite reads the database file alone with immutable=1: what the -wal holds would
    be missing from every read, so such a file is refused, on opening and on each read."""
    path = tmp_path / "events.db"
    await _prepare(path)
    wal_refused = (
        f"SQLite: {str(path)!r} has a non-empty write-ahead log ({path}-wal): it is being written"
    )
    async with EventStore(f"sqlite:///{path}") as writer:
        await writer.append("user.2", {"type": "created"})  # in the -wal, for now
        async with EventStore(f"sqlite:///{path}?immutable=1") as store:
            with pytest.raises(StoreError) as caught:
                await store.read_all()
            assert str(caught.value).startswith(wal_refused)
    # closed cleanly: the -wal is copied into the file and removed
    async with EventStore(f"sqlite:///{path}?immutable=1") as store:
        assert len(await store.read_all()) == 4
        async with EventStore(f"sqlite:///{path}") as writer:
            await writer.append("user.3", {"type": "created"})  # someone writes after all
            with pytest.raises(StoreError) as caught:
                await store.read_all()
            assert str(caught.value).startswith(wal_refused)
            with pytest.raises(StoreError, match=r"is open read-only \(immutable=1\)"):
                await store.append("user.4", {"type": "created"})


@pytest.mark.parametrize("query", ["mode=ro", "immutable=1"])
async def test_a_checkpointed_replay_on_read_only_checkpoints_is_refused_before_any_event(
    tmp_path: Path, query: str
) -> None:
    """Before, it handled every event, then failed to save the checkpoint: a re-run
    handled them all again."""
    path = tmp_path / "events.db"
    await _prepare(path)
    before = sha256(path)
    seen: list[str] = []
    async with EventStore(f"sqlite:///{path}?{query}") as store:
        # the checkpoints of the store's own URL (read-only too), then given as a URL
        for checkpoints in (None, f"sqlite:///{path}?{query}"):
            async with EventReplay(store, checkpoints=checkpoints) as replay:
                replay.handle("#", lambda event: seen.append(event.type))
                for run in (
                    replay.replay_all(checkpoint="nightly"),
                    replay.replay_stream("user.1", checkpoint="nightly"),
                ):
                    with pytest.raises(ConfigurationError) as caught:
                        await run
                    assert str(caught.value) == (
                        f"replay checkpoint 'nightly' cannot be saved: the checkpoint store "
                        f"{str(path)!r} ({query}) is open read-only, so nothing was replayed; "
                        "replay without checkpoint=, or give checkpoints= a writable store"
                    )
                assert seen == []
                # without a checkpoint the replay reads on
                assert (await replay.replay_all()).replayed == 3
                seen.clear()
    assert sha256(path) == before


async def test_read_only_checkpoints_load_and_refuse_saves(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    await _prepare(path)
    async with SQLiteCheckpointStore(path) as writable:
        await writable.save("nightly", 2, {"at": 2}, previous=None)
    before = sha256(path)
    async with open_checkpoint_store(f"sqlite:///{path}?mode=ro") as checkpoints:
        loaded = await checkpoints.load("nightly")
        assert loaded is not None and (loaded.position, loaded.state) == (2, {"at": 2})
        for write in (
            checkpoints.save("nightly", 3, None, previous=2),
            checkpoints.delete("nightly"),
        ):
            with pytest.raises(StoreError) as caught:
                await write
            assert str(caught.value) == (
                f"checkpoint store {str(path)!r} is open read-only (mode=ro): checkpoints "
                "are not saved or deleted; open the store without mode=ro to write them"
            )
    assert sha256(path) == before


_READ_ONLY_FILES = (
    DROP_WRITE_OVERRIDE
    + """
import asyncio, json, os, sys
from pepperpy.event import EventStore

path = os.path.join(sys.argv[1], "events.db")
report = {}

def failure(exc):
    return {"type": type(exc).__name__, "message": str(exc)}

async def main(query):
    async with EventStore(f"sqlite:///{path}?{query}") as store:
        try:
            report["read"] = [e.data for e in await store.get_stream("user.1")]
            report["streams"] = await store.streams()
        except Exception as exc:
            report["read"] = failure(exc)
        try:
            await store.append("user.1", {"type": "t"})
            report["append"] = "acknowledged"
        except Exception as exc:
            report["append"] = failure(exc)

drop_write_override()
asyncio.run(main(sys.argv[2]))
print(json.dumps(report))
"""
)


@pytest.mark.skipif(sys.platform != "linux", reason="capset")
async def test_a_read_only_file_and_directory_are_read(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    await _prepare(path)
    before = sha256(path)
    path.chmod(0o444)
    try:
        in_file = run_script(_READ_ONLY_FILES, tmp_path, "mode=ro")
        make_writable(tmp_path)
        for leftover in tmp_path.glob("events.db-*"):  # as a writer closing cleanly leaves it
            leftover.unlink()
        path.chmod(0o444)
        tmp_path.chmod(0o555)
        in_directory = run_script(_READ_ONLY_FILES, tmp_path, "mode=ro")
        immutable = run_script(_READ_ONLY_FILES, tmp_path, "immutable=1")
    finally:
        make_writable(tmp_path)
    assert sha256(path) == before
    for report, mode in ((in_file, "mode=ro"), (immutable, "immutable=1")):
        assert report["read"] == [{"n": 1}, {"n": 2}], report
        assert report["streams"] == ["order.1", "user.1"]
        assert report["append"] == {
            "type": "StoreError",
            "message": f"SQLite: {str(path)!r} is open read-only ({mode}): appends, deletes "
            f"and snapshots are refused; open it without {mode} to write",
        }
    read = in_directory["read"]  # the -wal and -shm cannot be made there
    assert isinstance(read, dict) and read["type"] == "StoreError", in_directory
    assert "(SQLITE_READONLY_DIRECTORY)" in read["message"]
    assert "mode=ro cannot make them in a read-only directory" in read["message"]
    assert "open it with immutable=1 instead" in read["message"]


_CLI = (
    DROP_WRITE_OVERRIDE
    + """
import contextlib, io, json, sys
drop_write_override()
from pepperpy.event.cli import main

out = io.StringIO()
sys.argv = ["pepperpy-event", *sys.argv[1:]]
with contextlib.redirect_stdout(out):
    try:
        main()
        code = 0
    except SystemExit as exit:
        code = exit.code
print(json.dumps({"code": code, "out": out.getvalue()}))
"""
)


@pytest.mark.skipif(sys.platform != "linux", reason="capset")
@pytest.mark.parametrize(("query", "directory_mode"), [("mode=ro", 0o755), ("immutable=1", 0o555)])
async def test_the_cli_reads_a_read_only_file(
    tmp_path: Path, query: str, directory_mode: int
) -> None:
    """``read``, ``streams`` and ``stats`` on a 0444 file (in a 0555 directory with
    ``immutable=1``), which the command's process cannot write."""
    path = tmp_path / "events.db"
    await _prepare(path)
    path.chmod(0o444)
    tmp_path.chmod(directory_mode)
    url = f"sqlite:///{path}?{query}"
    try:
        read = run_script(_CLI, "read", "user.1", "--store", url)
        streams = run_script(_CLI, "streams", "--store", url)
        stats = run_script(_CLI, "stats", "--store", url)
    finally:
        make_writable(tmp_path)
    assert read["code"] == streams["code"] == stats["code"] == 0, (read, streams, stats)
    assert [line.split()[:2] for line in str(read["out"]).splitlines()] == [
        ["0", "created"],
        ["1", "renamed"],
    ]
    assert [line.split()[0] for line in str(streams["out"]).splitlines()] == ["order.1", "user.1"]
    assert "events: 3" in str(stats["out"]).splitlines()
