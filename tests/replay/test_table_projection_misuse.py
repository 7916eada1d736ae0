"""TableProjection: what the database refuses, and handlers that misbehave.

Each case is the database saying no without a handler raising (a caught error that
aborts a PostgreSQL transaction, a constraint checked at COMMIT, a batch past its time
bound), or a handler doing what it must not (ending the transaction, changing the
session): each ends the run with a ReplayError that says what happened, nothing of the
batch written, tables and position as last committed; none is taken for an outage.
"""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import closing
from typing import Any

import pytest

from pepperpy.event import (
    Event,
    EventStore,
    ReplayError,
    SQLiteCheckpointStore,
    TableProjection,
)
from tests.replay.test_table_projection import append, expected, ledger, rows


@pytest.fixture
async def store(url: str) -> Any:
    async with EventStore(url) as events:
        await append(events, 6)
        yield events


def on(projection: TableProjection, sqlite: Any, postgres: Any) -> None:
    """Register the dialect's version of a handler for every event."""
    sqlite_url = str(projection.store.url).startswith("sqlite")
    projection.on("account.credited", sqlite if sqlite_url else postgres)


@pytest.mark.parametrize(
    "end",
    [
        lambda db: db.commit(),
        lambda db: db.rollback(),
        lambda db: db.executescript("SELECT 1"),
        lambda db: db.execute("COMMIT"),
    ],
    ids=["commit", "rollback", "executescript", "COMMIT"],
)
async def test_on_sqlite_a_handler_cannot_end_the_transaction(sqlite_url: str, end: Any) -> None:
    async with EventStore(sqlite_url) as store:
        await append(store, 6)
        projection = ledger(store, batch_size=4)
        await projection.run()
        await append(store, 3, first=6)

        def sneaky(db: sqlite3.Connection, event: Event) -> None:
            if event.global_position == 7:
                end(db)

        projection.on("account.credited", sneaky)
        with pytest.raises(ReplayError, match=r"tried to end the projection's transaction"):
            await projection.run()
        assert projection.position == 5
        assert await rows(sqlite_url) == expected(6)  # nothing of 6..8 was committed
        projection.off("account.credited", sneaky)
        await projection.run()
        assert await rows(sqlite_url) == expected(9)
        await projection.close()


async def test_on_sqlite_a_with_block_on_the_connection_commits_nothing(sqlite_url: str) -> None:
    async with EventStore(sqlite_url) as store:
        await append(store, 3)
        projection = TableProjection(
            "with",
            store,
            setup=lambda db: db.execute(
                "CREATE TABLE IF NOT EXISTS seen (position INTEGER PRIMARY KEY)"
            ),
        )

        @projection.on("account.credited")
        def record(db: sqlite3.Connection, event: Event) -> None:
            with db:  # the sqlite3 idiom commits on the way out: refused here
                db.execute("INSERT INTO seen VALUES (?)", (event.global_position,))

        for _ in range(3):  # a supervisor restarting it would add nothing each time
            with pytest.raises(ReplayError, match=r"a `with db:` block"):
                await projection.run()
        with closing(sqlite3.connect(sqlite_url.removeprefix("sqlite:///"))) as db:
            assert db.execute("SELECT count(*) FROM seen").fetchone() == (0,)
        assert await projection.load() is None
        await projection.close()


@pytest.mark.postgres
async def test_on_postgres_a_commit_in_a_handler_leaves_the_position_behind(
    postgres_url: str,
) -> None:
    async with EventStore(postgres_url) as store:
        await append(store, 6)
        projection = ledger(store, batch_size=6)

        async def sneaky(db: Any, event: Event) -> None:
            if event.global_position == 2:
                await db.execute("COMMIT")

        projection.on("account.credited", sneaky)
        with pytest.raises(ReplayError, match=r"ended the projection's transaction"):
            await projection.run()
        # the position is written last: what the stray COMMIT committed is behind it,
        # never ahead (events 3..5 were not skipped for good)
        assert await projection.load() is None
        assert await rows(postgres_url) == expected(3)
        await projection.close()


@pytest.mark.postgres
async def test_on_postgres_a_caught_statement_error_is_told_with_the_savepoint_to_use(
    postgres_url: str,
) -> None:
    async with EventStore(postgres_url) as store:
        await append(store, 3)
        import asyncpg

        async def setup(db: Any) -> None:
            await db.execute("CREATE TABLE IF NOT EXISTS seen (stream text PRIMARY KEY)")

        projection = TableProjection("once", store, setup=setup)
        savepoint = False

        @projection.on("account.credited")
        async def first_of_each(db: Any, event: Event) -> None:
            insert = db.execute("INSERT INTO seen VALUES ($1)", event.stream[:7])
            try:
                if savepoint:
                    async with db.transaction():
                        await insert
                else:
                    await insert
            except asyncpg.UniqueViolationError:
                pass  # "insert if new": aborts the transaction unless in a savepoint

        with pytest.raises(
            ReplayError, match=r"caught the error .*`async with db.transaction\(\):`"
        ):
            await projection.run()
        assert projection.position is None
        assert await projection.load() is None  # nothing was written, and memory agrees
        savepoint = True
        await projection.run()
        assert projection.position == 2
        await projection.close()


@pytest.mark.postgres
async def test_postgres_save_within_raises_the_aborted_transaction_as_asyncpg_did(
    postgres_url: str,
) -> None:
    import asyncpg

    from pepperpy.event import PostgresCheckpointStore

    checkpoints = PostgresCheckpointStore(postgres_url)

    async def work(db: Any) -> None:
        try:
            await db.execute("SELECT 1/0")
        except asyncpg.DivisionByZeroError:
            pass

    with pytest.raises(asyncpg.InFailedSQLTransactionError):
        await checkpoints.save_within("mine", 0, previous=None, work=work)
    assert await checkpoints.load("mine") is None
    await checkpoints.close()


async def test_sqlite_save_within_raises_the_works_own_error_as_it_is(tmp_path: Any) -> None:
    checkpoints = SQLiteCheckpointStore(tmp_path / "c.db")

    def work(db: sqlite3.Connection) -> None:
        db.execute("CREATE TABLE IF NOT EXISTS inbox (id TEXT PRIMARY KEY)")
        db.execute("INSERT INTO inbox VALUES ('a'), ('a')")

    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
        await checkpoints.save_within("mine", 0, previous=None, work=work)
    assert await checkpoints.load("mine") is None
    await checkpoints.close()


DEFERRED = {
    "sqlite": (
        "PRAGMA foreign_keys = ON;"
        "CREATE TABLE IF NOT EXISTS orders (id TEXT PRIMARY KEY);"
        "CREATE TABLE IF NOT EXISTS lines (order_id TEXT REFERENCES orders (id) "
        "DEFERRABLE INITIALLY DEFERRED, n INTEGER)"
    ),
    "postgres": (
        "CREATE TABLE IF NOT EXISTS orders (id text PRIMARY KEY);"
        "CREATE TABLE IF NOT EXISTS lines (order_id text REFERENCES orders (id) "
        "DEFERRABLE INITIALLY DEFERRED, n bigint)"
    ),
}


async def test_a_constraint_checked_at_commit_is_a_replay_error_not_an_outage(
    store: EventStore, url: str
) -> None:
    sqlite = url.startswith("sqlite")

    def setup(db: sqlite3.Connection) -> None:
        db.executescript(DEFERRED["sqlite"])

    async def pg_setup(db: Any) -> None:
        await db.execute(DEFERRED["postgres"])

    def line(db: sqlite3.Connection, event: Event) -> None:
        db.execute("INSERT INTO lines VALUES ('nowhere', ?)", (event.global_position,))

    async def pg_line(db: Any, event: Event) -> None:
        await db.execute("INSERT INTO lines VALUES ('nowhere', $1)", event.global_position)

    projection = TableProjection("lines", store, setup=setup if sqlite else pg_setup)
    on(projection, line, pg_line)
    with pytest.raises(ReplayError, match=r"global positions 0\.\.5 when it committed them"):
        await projection.run()
    # follow() does not take it for an outage to ride out: it ends at once
    with pytest.raises(ReplayError, match=r"when it committed them"):
        async with asyncio.timeout(10):
            await projection.follow(retry_for=None)
    assert await projection.load() is None
    await projection.close()


@pytest.mark.postgres
async def test_a_batch_past_command_timeout_is_a_replay_error_tried_once(
    postgres_url: str,
) -> None:
    async with EventStore(postgres_url) as store:
        await append(store, 3)
        calls = 0

        async def slow(db: Any, event: Event) -> None:
            nonlocal calls
            calls += 1
            await asyncio.sleep(0.5)

        projection = TableProjection("slow", store, state_store=f"{postgres_url}?command_timeout=1")
        projection.on("account.credited", slow)
        with pytest.raises(ReplayError, match=r"0\.\.2 outlasted .*command_timeout=1"):
            await projection.run()
        assert calls == 3  # the batch ran once: trying it again could not help
        assert await projection.load() is None
        await projection.close()


@pytest.mark.postgres
async def test_replicas_setting_up_at_once_take_turns(postgres_url: str) -> None:
    async with EventStore(postgres_url) as store:
        await append(store, 1)
        for round_ in range(3):  # a table of each round's own: each is a fresh race

            async def setup(db: Any, table: str = f"race_{round_}") -> None:
                await db.execute(
                    f"CREATE TABLE IF NOT EXISTS {table} (id bigint PRIMARY KEY, v text)"
                )

            replicas = [
                TableProjection(f"r{round_}", store, setup=setup, state_store=postgres_url)
                for _ in range(8)
            ]
            outcomes = await asyncio.gather(*(r.run() for r in replicas), return_exceptions=True)
            assert not [o for o in outcomes if isinstance(o, ReplayError)], outcomes
            await asyncio.gather(*(r.close() for r in replicas))


@pytest.mark.postgres
async def test_a_set_in_setup_or_a_handler_does_not_lose_the_checkpoint_table(
    postgres_url: str,
) -> None:
    async with EventStore(postgres_url) as store:
        await append(store, 4)

        async def setup(db: Any) -> None:
            await db.execute(
                "CREATE SCHEMA IF NOT EXISTS views; SET search_path TO views;"
                "CREATE TABLE IF NOT EXISTS views.seen (position bigint PRIMARY KEY)"
            )

        projection = TableProjection("views", store, setup=setup, batch_size=2)

        @projection.on("account.credited")
        async def record(db: Any, event: Event) -> None:
            await db.execute("SET search_path TO views")  # lasts past the batch: harmless
            await db.execute("INSERT INTO seen VALUES ($1)", event.global_position)

        await projection.run()
        assert projection.position == 3
        assert await projection.load() == 3
        await projection.close()


async def test_setup_runs_when_a_run_starts_even_with_nothing_to_apply(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path}/empty.db"
    async with EventStore(url) as store:
        projection = ledger(store)
        assert (await projection.run()).replayed == 0
        await projection.close()
    with closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as db:  # the tables are there
        assert db.execute("SELECT count(*) FROM credits").fetchone() == (0,)


async def test_a_failing_setup_on_sqlite_says_what_stays(sqlite_url: str) -> None:
    async with EventStore(sqlite_url) as store:

        def setup(db: sqlite3.Connection) -> None:
            db.execute("CREATE TABLE items (sku TEXT)")
            db.execute("CREATE INDEX items_sku ON items (skuu)")

        projection = TableProjection("items", store, setup=setup)
        with pytest.raises(ReplayError, match=r"autocommit on SQLite, so what it did"):
            await projection.run()
        await projection.close()
