"""Reading commands on a PostgreSQL database without a store create nothing there.

They used to make the store's six ``pepperpy_*`` tables in whatever database --store
named (another application's, given by mistake), then report an empty store. They now
refuse with one line naming the database; writing commands still create the store, and
a store of an older schema version is migrated and read. (``tail -f`` and ``serve``
wait for a store instead: ``test_postgres_follow_waits.py``.)
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pepperpy.event import EventStore
from tests.cli.conftest import Cli

pytestmark = pytest.mark.postgres

_READING = [
    ("stats",),
    ("streams",),
    ("read", "order.1"),
    ("tail",),
    ("export", "-"),
    ("replay",),
    ("replay", "--checkpoint", "nightly"),
    ("checkpoints",),
]


def _query(url: str, sql: str) -> list[Any]:
    asyncpg = pytest.importorskip("asyncpg")

    async def fetch() -> list[Any]:
        connection = await asyncpg.connect(url)
        try:
            if ";" in sql:  # a script: nothing to return
                await connection.execute(sql)
                return []
            return [tuple(row) for row in await connection.fetch(sql)]
        finally:
            await connection.close()

    return asyncio.run(fetch())


def _made(url: str) -> list[Any]:
    """Every table and schema the database holds beyond a new database's own."""
    return _query(
        url,
        "SELECT 'table', schemaname || '.' || tablename FROM pg_tables "
        "WHERE schemaname NOT IN ('pg_catalog', 'information_schema') UNION ALL "
        "SELECT 'schema', nspname FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%' "
        "AND nspname NOT IN ('information_schema', 'public')",
    )


@pytest.mark.parametrize("command", _READING, ids=" ".join)
@pytest.mark.parametrize("schema", [None, "events"])
def test_a_reading_command_refuses_a_database_without_a_store(
    cli: Cli, postgres_url: str, command: tuple[str, ...], schema: str | None
) -> None:
    url = postgres_url if schema is None else f"{postgres_url}?schema={schema}"
    database = postgres_url.rsplit("/", 1)[1]
    result = cli("--store", url, *command)
    assert result.code == 1, result
    assert result.out == ""
    [line] = result.err.splitlines()
    assert line.startswith(
        f"pepperpy-event: error: PostgreSQL: no event store in database {database!r}"
    )
    assert ("schema 'events'" if schema else "search_path public") in line
    assert "nothing was made there" in line
    assert _made(postgres_url) == []


def test_writing_commands_still_create_the_store(cli: Cli, postgres_url: str) -> None:
    appended = cli("--store", postgres_url, "append", "order.1", "order.placed", '{"n": 1}')
    assert appended.code == 0, appended
    assert len([row for row in _made(postgres_url) if row[0] == "table"]) == 6
    stats = cli("--store", postgres_url, "stats")
    assert stats.code == 0, stats
    assert "events: 1" in stats.lines


def test_a_store_of_an_older_schema_version_is_migrated_and_read(
    cli: Cli, postgres_url: str
) -> None:
    async def write() -> None:
        async with EventStore(postgres_url) as store:
            await store.append("order.1", {"type": "order.placed", "data": {"n": 1}})

    asyncio.run(write())
    # back to schema version 1: what migrations 2 and later added goes
    _query(
        postgres_url,
        "DROP TRIGGER pepperpy_events_time_blocks ON pepperpy_events; "
        "DROP FUNCTION pepperpy_note_time_blocks(); DROP TABLE pepperpy_time_blocks; "
        "DROP INDEX pepperpy_events_recorded_at, pepperpy_events_type, "
        "pepperpy_events_category, pepperpy_streams_name_c; "
        "DELETE FROM pepperpy_schema_version WHERE version > 1",
    )
    stats = cli("--store", postgres_url, "stats")
    assert stats.code == 0, stats
    assert "events: 1" in stats.lines
    replayed = cli("--store", postgres_url, "replay", "--from", "2000-01-01T00:00:00Z", "-q")
    assert replayed.code == 0, replayed
    assert "replayed 1," in replayed.err
    versions = _query(postgres_url, "SELECT version FROM pepperpy_schema_version ORDER BY 1")
    assert versions[0] == (1,) and len(versions) > 1
    assert _query(postgres_url, "SELECT count(*) FROM pepperpy_time_blocks") == [(1,)]
