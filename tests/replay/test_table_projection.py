"""TableProjection: rows of the user's own tables and the position commit together.

Each test runs on SQLite and PostgreSQL with the same read model written in each
dialect: a ``credits`` table with one row per applied event (its global position is the
primary key, so an event applied twice fails the insert) and a ``balance`` per account.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from contextlib import closing
from typing import Any

import pytest

from pepperpy.event import (
    ConcurrencyError,
    ConfigurationError,
    Event,
    EventStore,
    ReplayError,
    TableProjection,
)
from tests.helpers import Crash

EVENTS = 30

SQLITE_TABLES = (
    "CREATE TABLE IF NOT EXISTS credits (position INTEGER PRIMARY KEY, amount INTEGER);"
    "CREATE TABLE IF NOT EXISTS balance (account TEXT PRIMARY KEY, total INTEGER NOT NULL);"
)
PG_TABLES = (
    "CREATE TABLE IF NOT EXISTS credits (position bigint PRIMARY KEY, amount bigint);"
    "CREATE TABLE IF NOT EXISTS balance (account text PRIMARY KEY, total bigint NOT NULL);"
)


@pytest.fixture
async def store(url: str) -> AsyncIterator[EventStore]:
    async with EventStore(url) as events:
        await append(events, EVENTS)
        yield events


async def append(store: EventStore, count: int, first: int = 0) -> None:
    for n in range(first, first + count):
        await store.append(f"account.{n % 3}", Event("account.credited", {"amount": n}))


def ledger(
    store: EventStore,
    *,
    name: str = "ledger",
    batch_size: int = 7,
    fail_at: int | None = None,
    **options: Any,
) -> TableProjection:
    """The read model, in the dialect of ``store``'s database; the handler raises
    ``Crash`` at its ``fail_at``-th call."""
    sqlite = str(options.get("state_store") or store.url).startswith("sqlite")
    calls = 0

    def check() -> None:
        nonlocal calls
        calls += 1
        if calls == fail_at:
            raise Crash

    if sqlite:

        def setup(db: sqlite3.Connection) -> None:
            db.executescript(SQLITE_TABLES)

        def reset(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM credits")
            db.execute("DELETE FROM balance")

        def credit(db: sqlite3.Connection, event: Event) -> None:
            check()
            db.execute(
                "INSERT INTO credits VALUES (?, ?)", (event.global_position, event.data["amount"])
            )
            db.execute(
                "INSERT INTO balance VALUES (?, ?) ON CONFLICT (account) "
                "DO UPDATE SET total = total + excluded.total",
                (event.stream, event.data["amount"]),
            )

        projection = TableProjection(
            name, store, setup=setup, reset=reset, batch_size=batch_size, **options
        )
        projection.on("account.credited", credit)
        return projection

    async def pg_setup(db: Any) -> None:
        await db.execute(PG_TABLES)

    async def pg_reset(db: Any) -> None:
        await db.execute("DELETE FROM credits; DELETE FROM balance")

    async def pg_credit(db: Any, event: Event) -> None:
        check()
        await db.execute(
            "INSERT INTO credits VALUES ($1, $2)", event.global_position, event.data["amount"]
        )
        await db.execute(
            "INSERT INTO balance VALUES ($1, $2) ON CONFLICT (account) "
            "DO UPDATE SET total = balance.total + excluded.total",
            event.stream,
            event.data["amount"],
        )

    projection = TableProjection(
        name, store, setup=pg_setup, reset=pg_reset, batch_size=batch_size, **options
    )
    projection.on("account.credited", pg_credit)
    return projection


async def rows(url: str) -> tuple[list[int], dict[str, int]]:
    """The positions in ``credits`` and the balances, read with a connection of the
    test's own (not the projection's)."""
    if url.startswith("sqlite"):
        with closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as db:
            exists = db.execute("SELECT 1 FROM sqlite_master WHERE name = 'credits'").fetchone()
            if not exists:
                return [], {}
            credits = [p for (p,) in db.execute("SELECT position FROM credits ORDER BY 1")]
            balance = dict(db.execute("SELECT account, total FROM balance").fetchall())
        return credits, balance
    import asyncpg

    db = await asyncpg.connect(url)
    try:
        if await db.fetchval("SELECT to_regclass('credits')") is None:
            return [], {}
        credits = [r[0] for r in await db.fetch("SELECT position FROM credits ORDER BY 1")]
        balance = {r[0]: r[1] for r in await db.fetch("SELECT account, total FROM balance")}
    finally:
        await db.close()
    return credits, balance


def expected(count: int) -> tuple[list[int], dict[str, int]]:
    balance: dict[str, int] = {}
    for n in range(count):
        balance[f"account.{n % 3}"] = balance.get(f"account.{n % 3}", 0) + n
    return list(range(count)), balance


async def test_rows_and_position_commit_together_and_a_run_resumes(
    store: EventStore, url: str
) -> None:
    async with ledger(store) as projection:
        report = await projection.run()
        assert (report.replayed, report.last_position) == (EVENTS, EVENTS - 1)
        assert projection.position == EVENTS - 1
        assert projection.state is None  # the state is in the tables
        assert await rows(url) == expected(EVENTS)
        await append(store, 4, first=EVENTS)
        report = await projection.run()  # only the new events
        assert report.replayed == 4
        assert await rows(url) == expected(EVENTS + 4)
    async with ledger(store) as again:
        assert await again.load() == EVENTS + 3
        assert (await again.run()).replayed == 0


async def test_a_crash_mid_batch_loses_its_rows_with_its_position(
    store: EventStore, url: str
) -> None:
    async with ledger(store, fail_at=10) as crashing:
        with pytest.raises(Crash):
            await crashing.run()
        assert crashing.position == 6  # one batch of 7 committed, the second rolled back
    assert await rows(url) == expected(7)
    async with ledger(store) as resumed:
        await resumed.run()  # applies 7..29 once: a second insert of one would fail
    assert await rows(url) == expected(EVENTS)


async def test_a_failing_handler_rolls_its_batch_back_and_says_where(
    store: EventStore, url: str
) -> None:
    projection = ledger(store, batch_size=4)
    broken = False

    def fail(db: Any, event: Event) -> None:
        if broken and event.global_position == 13:
            raise ValueError("no such account")

    async def pg_fail(db: Any, event: Event) -> None:
        fail(db, event)

    projection.on("account.credited", fail if url.startswith("sqlite") else pg_fail)
    broken = True
    with pytest.raises(ReplayError, match=r"at global position 13: no such account; the batch"):
        await projection.run()
    assert projection.position == 11  # three batches of 4; the fourth (12..15) rolled back
    assert await rows(url) == expected(12)
    broken = False
    await projection.run()
    assert await rows(url) == expected(EVENTS)
    await projection.close()


async def test_an_error_of_the_handlers_own_sql_is_a_replay_error(
    store: EventStore, url: str
) -> None:
    async with ledger(store) as projection:
        await projection.run()
    # a second projection of another name inserts the same positions: the primary key
    # refuses the first, the database's error names it
    async with ledger(store, name="copy") as other:
        with pytest.raises(
            ReplayError, match=r"'copy'.*global position 0: .*(UNIQUE|unique|duplicate)"
        ):
            await other.run()
        assert other.position is None
    assert await rows(url) == expected(EVENTS)


async def test_two_runners_of_one_table_projection_conflict_and_apply_nothing_twice(
    store: EventStore, url: str
) -> None:
    first, second = ledger(store), ledger(store)
    await second.load()  # nothing yet
    await first.run()
    with pytest.raises(ConcurrencyError):
        await second.run()  # its first batch is rolled back with its compare-and-set
    assert second.position == EVENTS - 1  # it took the winner's position from disk
    assert await rows(url) == expected(EVENTS)
    await append(store, 2, first=EVENTS)
    await second.run()
    assert await rows(url) == expected(EVENTS + 2)
    await first.close()
    await second.close()


async def test_rebuild_empties_the_tables_with_the_position_and_folds_again(
    store: EventStore, url: str
) -> None:
    async with ledger(store) as projection:
        await projection.run()
        report = await projection.rebuild()
        assert report.replayed == EVENTS
        assert await rows(url) == expected(EVENTS)


async def test_rebuild_without_reset_is_refused_and_changes_nothing(
    store: EventStore, url: str
) -> None:
    async with ledger(store) as projection:
        await projection.run()
    async with TableProjection("ledger", store) as bare:
        with pytest.raises(ConfigurationError, match=r"cannot rebuild without reset="):
            await bare.rebuild()
        assert await bare.load() == EVENTS - 1
    assert await rows(url) == expected(EVENTS)


async def test_follow_applies_live_events_each_once(store: EventStore, url: str) -> None:
    async with ledger(store) as projection:
        task = asyncio.create_task(projection.follow())
        await append(store, 5, first=EVENTS)
        async with asyncio.timeout(20):
            while projection.position != EVENTS + 4:
                await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert await rows(url) == expected(EVENTS + 5)


async def test_code_not_suited_to_the_driver_is_refused_before_anything_is_applied(
    store: EventStore, url: str
) -> None:
    async def on_pg(db: Any, event: Event) -> None:
        pass

    def on_sqlite(db: Any, event: Event) -> None:
        pass

    sqlite = url.startswith("sqlite")
    async with TableProjection("wrong", store) as projection:
        projection.on("account.credited", on_pg if sqlite else on_sqlite)
        expected = r"handler .*on_pg is async" if sqlite else r"handler .*on_sqlite is not async"
        with pytest.raises(ConfigurationError, match=expected):
            await projection.run()
        assert await projection.load() is None


def test_a_handler_that_cannot_take_db_and_event_is_refused_naming_them(
    sqlite_url: str,
) -> None:
    projection = TableProjection("arity", EventStore(sqlite_url))
    with pytest.raises(TypeError, match=r"\(db, event\)"):
        projection.on("account.credited", lambda event: None)


async def test_a_state_store_without_tables_is_refused() -> None:
    async with EventStore("memory://") as store:
        await append(store, 1)
        async with TableProjection("nowhere", store) as projection:
            with pytest.raises(ConfigurationError, match=r"not SQLite or PostgreSQL"):
                await projection.run()


async def test_a_memory_store_can_keep_its_tables_in_sqlite(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path}/views.db"
    async with EventStore("memory://") as store:
        await append(store, EVENTS)
        async with ledger(store, state_store=url) as projection:
            await projection.run()
    assert await rows(url) == expected(EVENTS)


@pytest.mark.postgres
async def test_a_connection_lost_mid_batch_is_tried_once_more_and_applies_each_once(
    postgres_url: str,
) -> None:
    async with EventStore(postgres_url) as store:
        await append(store, EVENTS)
        projection = ledger(store)
        killed = False

        async def kill_own_connection(db: Any, event: Event) -> None:
            nonlocal killed
            if event.global_position == 9 and not killed:
                killed = True
                await db.execute("SELECT pg_terminate_backend(pg_backend_pid())")

        projection.on("account.credited", kill_own_connection)
        await projection.run()  # the second batch's connection died before its COMMIT
        assert killed
        assert projection.position == EVENTS - 1
        await projection.close()
    assert await rows(postgres_url) == expected(EVENTS)


CHILD = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    from pathlib import Path
    sys.path[:0] = [sys.argv[3], str(Path(sys.argv[3]).parents[1])]  # the module, tests.*
    from pepperpy.event import EventStore
    from test_table_projection import ledger

    async def main(url, kill_after):
        async with EventStore(url) as store:
            projection = ledger(store)
            calls = 0
            sqlite = url.startswith("sqlite")

            def kill(db, event):
                nonlocal calls
                calls += 1
                if calls > kill_after:
                    os.kill(os.getpid(), signal.SIGKILL)

            async def pg_kill(db, event):
                kill(db, event)

            projection.on("account.credited", kill if sqlite else pg_kill)
            await projection.run()

    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
    """
)


@pytest.mark.slow
async def test_a_killed_process_resumes_exactly_once(store: EventStore, url: str) -> None:
    here = os.path.dirname(__file__)
    for kill_after in (10, 20):
        done = subprocess.run(
            [sys.executable, "-c", CHILD, url, str(kill_after), here],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == -signal.SIGKILL, done.stderr
    # run 1 committed one batch of 7 before dying at its 11th event; run 2 resumed there
    # and committed two more before dying at its 21st: 21 events, each exactly once
    assert await rows(url) == expected(21)
    async with ledger(store) as resumed:
        assert await resumed.load() == 20
        await resumed.run()
    assert await rows(url) == expected(EVENTS)
