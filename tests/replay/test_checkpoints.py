"""Checkpoint stores: one suite over memory, SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from pepperpy.event import (
    Checkpoint,
    CheckpointStore,
    ConcurrencyError,
    ConfigurationError,
    Event,
    EventReplay,
    EventStore,
    MemoryCheckpointStore,
    PostgresCheckpointStore,
    Projection,
    SerializationError,
    SQLiteCheckpointStore,
    StoreError,
)
from pepperpy.event._checkpoints import open_checkpoint_store, sqlite_path
from tests.conftest import unique_name


class Factory:
    """Makes stores that share one backing database (one dict for memory), and tells
    what that database holds."""

    def __init__(
        self,
        backend: str,
        make: Callable[[], CheckpointStore],
        made: Callable[[], Awaitable[list[str] | None]],
    ) -> None:
        self.backend = backend
        self._make = make
        self.made = made
        """The tables of the backing database (None: SQLite's file does not exist)."""

    def __call__(self) -> CheckpointStore:
        return self._make()


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def factory(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Factory]:
    opened: list[CheckpointStore] = []
    if request.param == "memory":
        shared = MemoryCheckpointStore()

        def make() -> CheckpointStore:
            return shared

        async def made() -> list[str] | None:
            return []  # it has no database
    elif request.param == "sqlite":
        path = tmp_path / "events.db"

        def make() -> CheckpointStore:
            store = SQLiteCheckpointStore(path)
            opened.append(store)
            return store

        async def made() -> list[str] | None:
            if not path.exists():
                return None
            with closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as db:
                rows = db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
                return sorted(name for (name,) in rows)
    else:
        # postgres_url is an async fixture, which an async fixture cannot request lazily
        server = request.getfixturevalue("postgres_server")
        asyncpg = pytest.importorskip("asyncpg")
        database = unique_name("pepperpy_cp")
        admin = await asyncpg.connect(f"{server}/postgres")
        await admin.execute(f'CREATE DATABASE "{database}"')
        await admin.close()

        def make() -> CheckpointStore:
            store = PostgresCheckpointStore(f"{server}/{database}")
            opened.append(store)
            return store

        async def made() -> list[str] | None:
            connection = await asyncpg.connect(f"{server}/{database}")
            try:
                rows = await connection.fetch(
                    "SELECT schemaname || '.' || tablename FROM pg_tables "
                    "WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
                )
            finally:
                await connection.close()
            return sorted(row[0] for row in rows)

    yield Factory(request.param, make, made)
    for store in opened:
        await store.close()
    if request.param == "postgres":
        admin = await asyncpg.connect(f"{server}/postgres")
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.close()


async def test_reads_create_nothing_and_the_first_write_creates_the_table(
    factory: Factory,
) -> None:
    """A read where nothing was saved answers none and makes nothing (SQLite made its
    file and table on the first call, reads included); the first save makes them."""
    before = await factory.made()
    assert before == ([] if factory.backend != "sqlite" else None)  # no SQLite file yet
    store, other = factory(), factory()
    assert await store.names() == []
    assert await store.load("nightly") is None
    assert await store.delete("nightly") is False
    assert await other.names() == []
    await store.close()  # a connection opened and closed makes nothing either
    assert await store.names() == []
    assert await factory.made() == before

    await store.save("nightly", 3, {"n": 1}, previous=None)
    if factory.backend == "sqlite":
        assert await factory.made() == ["pepperpy_checkpoints"]
    elif factory.backend == "postgres":
        assert await factory.made() == ["public.pepperpy_checkpoints"]
    loaded = await other.load("nightly")  # the other store's connection finds it
    assert loaded is not None and (loaded.position, loaded.state) == (3, {"n": 1})
    assert await other.names() == ["nightly"]
    assert await other.delete("nightly") is True


async def test_missing_checkpoint_loads_as_none(factory: Factory) -> None:
    assert await factory().load("nothing") is None
    assert await factory().delete("nothing") is False


async def test_save_load_and_compare_and_set(factory: Factory) -> None:
    store = factory()
    await store.save("p", 3, {"count": 3, "names": ["a", "é"]}, previous=None)
    saved = await store.load("p")
    assert saved is not None
    assert (saved.name, saved.position, saved.state) == ("p", 3, {"count": 3, "names": ["a", "é"]})
    assert saved.updated_at.tzinfo is not None
    await store.save("p", 7, None, previous=3)
    again = await store.load("p")
    assert again is not None and (again.position, again.state) == (7, None)
    with pytest.raises(ConcurrencyError) as caught:
        await store.save("p", 9, {}, previous=3)
    assert (caught.value.expected, caught.value.actual) == (3, 7)
    with pytest.raises(ConcurrencyError):
        await store.save("p", 9, {}, previous=None)  # it exists already
    with pytest.raises(ConcurrencyError):
        await store.save("q", 1, {}, previous=0)  # it does not exist yet
    after = await store.load("p")
    assert after is not None and after.position == 7
    assert await store.delete("p") is True
    assert await store.load("p") is None


async def test_names_lists_every_checkpoint_sorted_by_code_point(factory: Factory) -> None:
    store = factory()
    assert await store.names() == []
    for name in ("projection:sales", "Zed", "nightly", "tables:ledger", "é"):
        await store.save(name, 1, None, previous=None)
    assert await factory().names() == ["Zed", "nightly", "projection:sales", "tables:ledger", "é"]
    await store.delete("nightly")
    assert await store.names() == ["Zed", "projection:sales", "tables:ledger", "é"]


async def test_a_second_connection_sees_what_the_first_saved(factory: Factory) -> None:
    first, second = factory(), factory()
    await first.save("shared", 1, {"x": 1}, previous=None)
    seen = await second.load("shared")
    assert seen is not None and seen.state == {"x": 1}
    await second.save("shared", 2, {"x": 2}, previous=1)
    with pytest.raises(ConcurrencyError):
        await first.save("shared", 2, {"x": 99}, previous=1)
    final = await first.load("shared")
    assert final is not None and final.state == {"x": 2}


async def test_a_store_that_writes_says_it_is_not_read_only(factory: Factory) -> None:
    assert factory().read_only is False


class _Archive(MemoryCheckpointStore):
    """A store of the application's own that only reads, as the base class lets it say."""

    read_only = True


async def test_a_checkpointed_replay_on_a_read_only_store_is_refused_before_any_event() -> None:
    store = EventStore()
    await store.append("user.1", [Event("user.created", {})])
    seen: list[Event] = []
    async with EventReplay(store, checkpoints=_Archive()) as replay:
        replay.handle("#", seen.append)
        with pytest.raises(ConfigurationError) as caught:
            await replay.replay_all(checkpoint="nightly")
        assert str(caught.value) == (
            "replay checkpoint 'nightly' cannot be saved: the checkpoint store _Archive is "
            "open read-only, so nothing was replayed; replay without checkpoint=, or give "
            "checkpoints= a writable store"
        )
        assert seen == []
        assert (await replay.replay_all()).replayed == 1  # without a checkpoint it reads


@pytest.mark.parametrize("method", ["run", "rebuild", "follow"])
async def test_a_projection_on_a_read_only_state_store_is_refused_before_any_event(
    method: str,
) -> None:
    store = EventStore()
    await store.append("user.1", [Event("user.created", {})])
    applied: list[Event] = []
    archive = _Archive()
    await archive.save("projection:users", 0, {"kept": True}, previous=None)
    projection = Projection("users", store, state_store=archive)

    @projection.on("user.*")
    def count(state: dict[str, Any], event: Event) -> dict[str, Any]:
        applied.append(event)
        return state

    with pytest.raises(ConfigurationError) as caught:
        await asyncio.wait_for(getattr(projection, method)(), 5)
    assert str(caught.value) == (
        "projection 'users' cannot save its state: the state store _Archive is open "
        "read-only, so nothing was applied; give state_store= a writable store"
    )
    assert applied == []
    saved = await archive.load("projection:users")  # a rebuild deleted nothing either
    assert saved is not None and saved.state == {"kept": True}


class _FailsOnce(MemoryCheckpointStore):
    """Fails its second save with ``error`` (having written nothing), counting loads."""

    def __init__(self, error: StoreError) -> None:
        super().__init__()
        self.error = error
        self.saves = self.loads = 0

    async def save(self, name: str, position: int, state: Any, *, previous: int | None) -> None:
        self.saves += 1
        if self.saves == 2:
            raise self.error
        await super().save(name, position, state, previous=previous)

    async def load(self, name: str) -> Checkpoint | None:
        self.loads += 1
        return await super().load(name)


def _nothing_written() -> StoreError:
    error = StoreError("checkpoint store 'x': disk I/O error; nothing of this call was written")
    error.written = False
    return error


@pytest.mark.parametrize(
    ("error", "in_doubt"),
    [(_nothing_written(), False), (StoreError("connection lost during COMMIT"), True)],
    ids=["nothing written", "outcome unknown"],
)
async def test_a_failed_save_known_not_written_is_not_read_back_or_held_in_doubt(
    error: StoreError, in_doubt: bool
) -> None:
    store = EventStore()
    await store.append("user.1", [Event("user.created", {"n": n}) for n in range(4)])
    checkpoints = _FailsOnce(error)
    async with EventReplay(store, checkpoints=checkpoints) as replay:
        replay.handle("#", lambda event: None)
        with pytest.raises(StoreError) as caught:
            await replay.replay_all(checkpoint="nightly", checkpoint_every=1)
    notes = getattr(caught.value, "__notes__", [])
    doubted = any("the failed save may still be written" in note for note in notes)
    assert doubted is in_doubt, notes
    assert checkpoints.loads == (2 if in_doubt else 1)  # the resume, and a read-back
    saved = await checkpoints.load("replay:nightly")
    # written=False: the run's final save still compares with what the checkpoint holds
    # (position 0) and records how far it got; in doubt, it saves no more
    assert saved is not None and saved.position == (0 if in_doubt else 1)


async def test_state_must_be_json(factory: Factory) -> None:
    with pytest.raises(TypeError):
        await factory().save("bad", 1, {"x": object()}, previous=None)
    assert await factory().load("bad") is None


#: a state whose JSON jsonb would not keep as written: keys not in jsonb's order (by
#: length, then bytes) at every depth, -0.0, integers at both ends of 64 bits, and floats
#: (0.1, 0.1 + 0.2, 1.0, 1e-7) that come back another float, or an int, if re-printed
ODD_STATE: dict[str, Any] = {
    "zeta": 1,
    "alpha": {"b": [{"yy": 1, "x": {"ccc": 0.1, "a": -0.0}}], "aa": 2, "a": 1.0},
    "mm": 0.1 + 0.2,
    "negative zero": -0.0,
    "big": 2**64 - 1,
    "small": -(2**63),
    "one": 1.0,
    "tiny": 1e-7,
    "b": [True, None, "é", {"z": 0, "y": {}}],
    "": 0.1,
}


def key_orders(value: Any) -> Any:
    """Every dict's keys in ``value``, in order, nested as the dicts are."""
    if isinstance(value, dict):
        return [(key, key_orders(item)) for key, item in value.items()]
    if isinstance(value, list):
        return [key_orders(item) for item in value]
    return None


async def test_state_loads_back_exactly_as_saved(factory: Factory) -> None:
    """PostgreSQL kept the state as jsonb, which sorts keys and turns -0.0 into 0: a
    projection evicting ``next(iter(state))`` evicted another entry after a restart."""
    store = factory()
    await store.save("odd", 1, ODD_STATE, previous=None)
    for reader in (store, factory()):  # this connection, and another one
        saved = await reader.load("odd")
        assert saved is not None
        assert saved.state == ODD_STATE
        assert key_orders(saved.state) == key_orders(ODD_STATE)
        assert repr(saved.state) == repr(ODD_STATE)  # -0.0, 1.0 and the floats' digits too
    await store.save("odd", 2, {"second": 2, "first": 1}, previous=1)  # the UPDATE's path
    again = await store.load("odd")
    assert again is not None and list(again.state) == ["second", "first"]


async def test_a_loaded_state_is_the_callers_own(factory: Factory) -> None:
    """The memory store handed every load the state object it kept: a caller changing
    the state it loaded (a projection's ``load()``, never committed) changed the saved
    checkpoint, which every later load then gave. Each load is now a copy, as a database
    row decoded anew is."""
    store = factory()
    await store.save("mine", 1, {"n": 1, "items": [1]}, previous=None)
    first = await store.load("mine")
    assert first is not None
    first.state["n"] = 999
    first.state["items"].append(2)
    second = await factory().load("mine")
    assert second is not None and second.state == {"n": 1, "items": [1]}
    assert second.state is not first.state


async def test_a_state_of_a_projection_changed_by_hand_is_not_what_the_next_loads(
    factory: Factory,
) -> None:
    """Two Projection objects of one name share their state store: a state one loaded
    and its caller changed by hand was what the other loaded, on memory only."""
    async with EventStore() as events:
        await events.append("n.1", {"type": "n.x"})
        state_store = factory()

        def counted() -> Projection:
            projection = Projection("counts", events, initial={"n": 0}, state_store=state_store)

            @projection.on("n.x")
            def count(state: dict[str, int], event: Event) -> None:
                state["n"] += 1

            return projection

        await counted().run()
        loaded = await counted().load()
        loaded["n"] = 999  # a caller's own edit, never committed
        assert await counted().load() == {"n": 1}


# a lone surrogate was "cannot encode as JSON: ...", naming no checkpoint state
@pytest.mark.parametrize(
    "state", [{1: "a", "1": "b"}, {"n": {2: "x"}}, {"s": {1, 2}}, {"k": "x\udcff"}]
)
async def test_state_that_would_not_load_back_as_saved_is_refused(
    factory: Factory, state: dict[Any, Any]
) -> None:
    # JSON would turn 1 into "1" (merging the two keys) and a set into a list
    with pytest.raises(SerializationError, match="checkpoint state"):
        await factory().save("bad", 1, state, previous=None)
    assert await factory().load("bad") is None


@pytest.mark.parametrize(
    ("name", "error", "message"),
    [
        (None, TypeError, "must be a str, got None"),
        (5, TypeError, "must be a str, got 5"),
        ("a\x00b", ConfigurationError, "contains a NUL character"),
        ("a\udcff", ConfigurationError, "contains a lone surrogate"),
    ],
)
async def test_a_name_no_backend_can_hold_is_refused_the_same_everywhere(
    factory: Factory, name: Any, error: type[Exception], message: str
) -> None:
    """SQLite saved None as a NULL name (after which names() failed for good with an
    AttributeError) and took a NUL, which PostgreSQL refused with a StoreError reading like
    an outage; a lone surrogate was a bare UnicodeEncodeError on SQLite, taken in memory."""
    store = factory()
    await store.save("kept", 1, previous=None)
    with pytest.raises(error, match=message):
        await store.save(name, 1, previous=None)
    with pytest.raises(error, match=message):
        await store.load(name)
    with pytest.raises(error, match=message):
        await store.delete(name)
    assert await store.names() == ["kept"]


async def test_a_name_too_long_for_postgres_index_is_refused_everywhere(factory: Factory) -> None:
    """A name past PostgreSQL's index row limit (2,704 bytes) failed there only, with a
    StoreError, as if the database were down; memory and SQLite took it."""
    store = factory()
    longest = "é" * 1024  # 2,048 bytes in UTF-8
    await store.save(longest, 1, previous=None)
    assert (await store.load(longest)) is not None
    with pytest.raises(ConfigurationError, match="longer than 2048 bytes in UTF-8"):
        await store.save("x" + longest, 1, previous=None)
    assert await store.names() == [longest]


@pytest.mark.parametrize(
    ("position", "previous", "error", "message"),
    [
        (True, None, TypeError, "checkpoint position must be an int, got True"),
        (1.5, None, TypeError, "checkpoint position must be an int, got 1.5"),
        ("3", None, TypeError, "checkpoint position must be an int, got '3'"),
        (None, None, TypeError, "checkpoint position must be an int, got None"),
        (2**63, None, ValueError, "must fit in 64 bits"),
        (1, "0", TypeError, "previous must be an int or None, got '0'"),
        (1, 2**63, ValueError, "previous must fit in 64 bits"),
    ],
)
async def test_a_position_no_backend_can_hold_is_refused_the_same_everywhere(
    factory: Factory, position: Any, previous: Any, error: type[Exception], message: str
) -> None:
    """True was stored as 1, 1.5 kept as a float by SQLite and cut to 1 by PostgreSQL, "3"
    taken by SQLite; None and 2**63 were a StoreError or a bare OverflowError."""
    store = factory()
    with pytest.raises(error, match=message):
        await store.save("p", position, previous=previous)
    assert await store.load("p") is None
    with pytest.raises(TypeError, match="revision must be a str or None, got 7"):
        await store.save("p", 1, previous=None, revision=7)  # type: ignore[arg-type]
    assert await store.load("p") is None


async def test_async_context_manager_closes(tmp_path: Path) -> None:
    async with SQLiteCheckpointStore(tmp_path / "c.db") as store:
        await store.save("a", 0, None, previous=None)
    async with SQLiteCheckpointStore(tmp_path / "c.db") as store:
        saved = await store.load("a")
        assert saved is not None and saved.position == 0
    with closing(sqlite3.connect(tmp_path / "c.db")) as raw, raw:
        assert raw.execute("SELECT name, position FROM pepperpy_checkpoints").fetchall() == [
            ("a", 0)
        ]


def test_urls_choose_the_backend(tmp_path: Path) -> None:
    assert isinstance(open_checkpoint_store(None), MemoryCheckpointStore)
    assert isinstance(open_checkpoint_store("memory://"), MemoryCheckpointStore)
    sqlite_store = open_checkpoint_store(f"sqlite:///{tmp_path}/e.db")
    assert isinstance(sqlite_store, SQLiteCheckpointStore)
    assert sqlite_store.path == tmp_path / "e.db"
    assert isinstance(open_checkpoint_store("postgresql://u@h/db"), PostgresCheckpointStore)
    assert sqlite_path("sqlite:///events.db") == Path("events.db")
    assert sqlite_path("sqlite:////abs/events.db?busy_timeout=5") == Path("/abs/events.db")
    # parsed by the store's own parser: what the store refuses is refused here too
    for bad in (
        "redis://x",
        "events.db",
        "sqlite://",
        "sqlite:///:memory:",
        "sqlite:///e.db?mode=rw",
        "sqlite:///e.db?create=maybe",
    ):
        with pytest.raises(ConfigurationError):
            open_checkpoint_store(bad)


async def test_unreachable_postgres_is_a_store_error() -> None:
    store = PostgresCheckpointStore("postgresql://postgres@127.0.0.1:1/nowhere")
    with pytest.raises(StoreError, match="PostgreSQL"):
        await store.load("x")


async def test_unwritable_sqlite_is_a_store_error(tmp_path: Path) -> None:
    store = SQLiteCheckpointStore(tmp_path / "missing-dir" / "e.db")
    assert await store.load("x") is None  # a read makes nothing, so it finds none
    with pytest.raises(StoreError):
        await store.save("x", 1, previous=None)
    await store.close()


async def _terminate_all(admin: Any, database: str) -> None:
    """Terminate every other backend of ``database`` and wait until they are gone."""
    rows = await admin.fetch(
        "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = $1 AND pid <> pg_backend_pid()",
        database,
    )
    killed = [row[0] for row in rows if row[1]]
    assert killed
    for _ in range(500):
        if not await admin.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = any($1::int[])", killed
        ):
            return
        await asyncio.sleep(0.01)


@pytest.mark.postgres
async def test_postgres_checkpoints_reconnect_after_the_server_drops_the_connection(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    asyncpg = pytest.importorskip("asyncpg")
    database = postgres_url.rsplit("/", 1)[1]
    store = PostgresCheckpointStore(postgres_url)
    admin = await asyncpg.connect(postgres_url)
    try:
        await store.save("c", 1, {"n": 1}, previous=None)
        await _terminate_all(admin, database)
        loaded = await store.load("c")  # on a new connection
        assert loaded is not None and loaded.position == 1
        await store.save("c", 2, {"n": 2}, previous=1)

        # the connection lost before the save's statement was sent: nothing can have run,
        # so the save is done again on a new connection (a statement lost after it was
        # sent is of unknown outcome: tests/store/test_checkpoint_faults.py)
        execute = asyncpg.Connection.execute

        async def dying_execute(self: Any, *args: Any, **kwargs: Any) -> Any:
            monkeypatch.undo()
            await _terminate_all(admin, database)
            return await execute(self, *args, **kwargs)

        monkeypatch.setattr(asyncpg.Connection, "execute", dying_execute)
        await store.save("c", 3, {"n": 3}, previous=2)
        loaded = await store.load("c")
        assert loaded is not None and (loaded.position, loaded.state) == (3, {"n": 3})
    finally:
        await admin.close()
        await store.close()


@pytest.mark.postgres
async def test_a_projection_on_postgres_runs_again_after_the_server_dropped_its_connections(
    postgres_url: str,
) -> None:
    asyncpg = pytest.importorskip("asyncpg")
    database = postgres_url.rsplit("/", 1)[1]
    events = EventStore(postgres_url)
    projection = Projection("balance", events, initial=lambda: {"total": 0})

    @projection.on("acct.deposited")
    def deposited(state: dict[str, int], event: Event) -> None:
        state["total"] += event.data["amount"]

    admin = await asyncpg.connect(postgres_url)
    try:
        async with asyncio.timeout(60):
            for n in range(5):
                await events.append(f"acct.{n % 2}", Event("acct.deposited", {"amount": 1}))
            assert (await projection.run()).replayed == 5
            await _terminate_all(admin, database)  # the store's pool and the checkpoints'
            await events.append("acct.1", Event("acct.deposited", {"amount": 1}))
            assert (await projection.run()).replayed == 1
            assert projection.state == {"total": 6}
            replay = EventReplay(events)
            replay.handle("acct.#")(lambda event: None)
            assert (await replay.replay_all(checkpoint="c1")).replayed == 6
            await _terminate_all(admin, database)
            await events.append("acct.0", Event("acct.deposited", {"amount": 1}))
            assert (await replay.replay_all(checkpoint="c1")).replayed == 1
            await replay.close()
    finally:
        await admin.close()
        await projection.close()
        await events.close()
