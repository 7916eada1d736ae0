"""A schema migration is not cut off by command_timeout, and is logged.

The whole schema setup ran under one command_timeout watchdog, as if it were one
statement: on a big store a migration's CREATE INDEX outlasts it, is cut off, done again
from scratch, cut off again, every time, and the store never opens ('PostgreSQL did not
answer within ...'). Here a session holding a lock on the log makes migration 3's index
build wait for well over twice command_timeout (1 s), as a long build would take.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from pepperpy.event import EventStore
from pepperpy.event.store import _pg_schema
from pepperpy.event.store._pg_schema import _MIGRATIONS

asyncpg = pytest.importorskip("asyncpg")

#: the migrations this version knows (the last one is run again after 3 here)
LAST = len(_MIGRATIONS)


async def test_a_migration_longer_than_command_timeout_finishes(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with EventStore(postgres_url) as store:
        await store.append("s.1", {"type": "t", "data": {}})
    admin = await asyncpg.connect(postgres_url)
    blocker = await asyncpg.connect(postgres_url)
    try:  # back to schema version 2: migration 3 builds two indexes
        await admin.execute(
            "DROP INDEX pepperpy_events_type; DROP INDEX pepperpy_events_category; "
            "DELETE FROM pepperpy_schema_version WHERE version >= 3"
        )
        versions = await admin.fetchval("SELECT max(version) FROM pepperpy_schema_version")
        assert versions == 2
        # a transaction that wrote to the log: CREATE INDEX waits for it to end
        transaction = blocker.transaction()
        await transaction.start()
        await blocker.execute("LOCK TABLE pepperpy_events IN ROW EXCLUSIVE MODE")
        store = EventStore(postgres_url + "?command_timeout=1")
        try:
            with caplog.at_level(logging.INFO, logger="pepperpy.event.store"):
                opening = asyncio.create_task(store.head())
                for _ in range(600):  # until the build has waited 2.5 s (bounded)
                    waited = await admin.fetchval(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                        "AND query LIKE '%CREATE INDEX%' "
                        "AND clock_timestamp() - query_start > interval '2.5 s'"
                    )
                    if waited or opening.done():
                        break
                    await asyncio.sleep(0.05)
                await transaction.rollback()
                async with asyncio.timeout(60):
                    assert await opening == 0  # the old code: StoreError, cut off twice
            assert f"schema migration 3 of {LAST} started" in caplog.text
            assert f"schema migration 3 of {LAST} finished" in caplog.text
            assert f"schema migration {LAST} of {LAST} finished" in caplog.text
            rows = await admin.fetch("SELECT version FROM pepperpy_schema_version ORDER BY 1")
            assert [row[0] for row in rows] == list(range(1, LAST + 1))
        finally:
            await store.close()
    finally:
        await blocker.close()
        await admin.close()


async def test_an_up_to_date_store_logs_no_migration(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with EventStore(postgres_url) as store:
        await store.append("s.1", {"type": "t", "data": {}})
    with caplog.at_level(logging.INFO, logger="pepperpy.event.store"):
        async with EventStore(postgres_url) as store:
            assert await store.head() == 0
    assert "migration" not in caplog.text


async def test_a_connection_lost_during_a_migration_is_said_so(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with EventStore(postgres_url) as store:
        await store.append("s.1", {"type": "t", "data": {}})
    admin = await asyncpg.connect(postgres_url)
    blocker = await asyncpg.connect(postgres_url)
    building = (
        "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
        "AND query LIKE '%CREATE INDEX%'"
    )

    async def build() -> int:
        for _ in range(600):  # bounded
            pid = await admin.fetchval(building)
            if pid is not None:
                return int(pid)
            await asyncio.sleep(0.05)
        raise AssertionError("migration 3 never waited for its lock")

    try:
        await admin.execute(
            "DROP INDEX pepperpy_events_type; DROP INDEX pepperpy_events_category; "
            "DELETE FROM pepperpy_schema_version WHERE version >= 3"
        )
        transaction = blocker.transaction()
        await transaction.start()
        await blocker.execute("LOCK TABLE pepperpy_events IN ROW EXCLUSIVE MODE")
        store = EventStore(postgres_url + "?command_timeout=30")
        try:
            with caplog.at_level(logging.INFO, logger="pepperpy.event.store"):
                opening = asyncio.create_task(store.head())
                first = await build()
                await admin.execute("SELECT pg_terminate_backend($1)", first)
                for _ in range(600):  # the setup done once more, on a new connection
                    again = await build()
                    if again != first:
                        break
                    await asyncio.sleep(0.05)
                await transaction.rollback()
                async with asyncio.timeout(60):
                    assert await opening == 0
            assert f"during schema migration 3 of {LAST}; trying once more" in caplog.text
        finally:
            await store.close()
    finally:
        await blocker.close()
        await admin.close()


async def test_a_migration_is_unbounded_as_a_step_not_by_its_sql_text(
    postgres_url: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The setup lifted command_timeout for a statement whose text was one of the
    migrations' scripts, as they were when the pool module was imported: a migration
    added since (here, one that sleeps past command_timeout) ran bounded, and was cut
    off at every open. migrate() now says which steps may take long."""
    async with EventStore(postgres_url) as store:  # at the current version, LAST
        await store.append("s.1", {"type": "t", "data": {}})
    slow = "SELECT pg_sleep(2.5)"  # no DDL: a stand-in for a long index build
    monkeypatch.setattr(_pg_schema, "_MIGRATIONS", (*_MIGRATIONS, slow))
    with caplog.at_level(logging.INFO, logger="pepperpy.event.store"):
        async with EventStore(postgres_url + "?command_timeout=1") as store:
            async with asyncio.timeout(60):
                assert await store.head() == 0
            await store.append("s.1", {"type": "t", "data": {}})
    assert f"schema migration {LAST + 1} of {LAST + 1} started" in caplog.text
    assert f"schema migration {LAST + 1} of {LAST + 1} finished" in caplog.text
    admin = await asyncpg.connect(postgres_url)
    try:
        rows = await admin.fetch("SELECT version FROM pepperpy_schema_version ORDER BY 1")
    finally:
        await admin.close()
    assert [row[0] for row in rows] == list(range(1, LAST + 2))


async def test_a_store_made_by_the_scripts_as_they_are_opens_without_migrating(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A database at the current schema, laid out as every earlier version of this code
    did (each script, then its version row), opens and works: no step is run again."""
    admin = await asyncpg.connect(postgres_url)
    try:
        await admin.execute(
            "CREATE TABLE pepperpy_schema_version (version integer PRIMARY KEY, "
            "applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for number, script in enumerate(_MIGRATIONS, start=1):
            async with admin.transaction():
                await admin.execute(script)
                await admin.execute(
                    "INSERT INTO pepperpy_schema_version (version) VALUES ($1)", number
                )
        with caplog.at_level(logging.INFO, logger="pepperpy.event.store"):
            async with EventStore(postgres_url) as store:
                await store.append("s.1", [{"type": "t", "data": {"n": n}} for n in range(3)])
                assert [event.data async for event in store.get_stream("s.1")] == [
                    {"n": 0},
                    {"n": 1},
                    {"n": 2},
                ]
        assert "migration" not in caplog.text
        rows = await admin.fetch("SELECT version FROM pepperpy_schema_version ORDER BY 1")
        assert [row[0] for row in rows] == list(range(1, LAST + 1))
    finally:
        await admin.close()
