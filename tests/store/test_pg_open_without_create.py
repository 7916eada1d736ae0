"""A PostgreSQL store opened with ``create=False`` makes no tables in a database without a
store (another application's, given by mistake), as an SQLite one makes no file; an
existing store, even of an older schema version, opens (and is migrated) as before."""

from __future__ import annotations

import asyncpg
import pytest

from pepperpy.event import EventStore, StoreError
from pepperpy.event.store.postgres import PostgresBackend

pytestmark = pytest.mark.postgres


async def _made(url: str) -> list[str]:
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch(
            "SELECT schemaname || '.' || tablename FROM pg_tables "
            "WHERE schemaname NOT IN ('pg_catalog', 'information_schema') UNION ALL "
            "SELECT nspname FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%' "
            "AND nspname NOT IN ('information_schema', 'public')"
        )
        return sorted(row[0] for row in rows)
    finally:
        await connection.close()


@pytest.mark.parametrize("schema", [None, "app"])
async def test_a_database_without_a_store_is_refused_and_left_as_it_is(
    postgres_url: str, schema: str | None
) -> None:
    url = postgres_url if schema is None else f"{postgres_url}?schema={schema}"
    database = postgres_url.rsplit("/", 1)[1]
    backend = PostgresBackend(url, create=False)
    assert backend.create is False
    async with EventStore(backend) as store:
        for _ in range(2):  # the refusal is not cached: each use looks again
            with pytest.raises(StoreError) as raised:
                await store.read_all(0, limit=1)
            message = str(raised.value)
            assert f"no event store in database {database!r}" in message
            assert ("schema 'app'" if schema else "search_path public") in message
            assert raised.value.written is False
    assert await _made(postgres_url) == []


async def test_the_create_attribute_set_before_first_use_refuses_too(postgres_url: str) -> None:
    store = EventStore(postgres_url)
    assert isinstance(store.backend, PostgresBackend) and store.backend.create is True
    store.backend.create = False
    async with store:
        with pytest.raises(StoreError, match="no event store in database"):
            await store.append("order.1", {"type": "order.placed"})
    assert await _made(postgres_url) == []


async def test_an_existing_store_opens_and_an_older_one_is_migrated(postgres_url: str) -> None:
    async with EventStore(postgres_url) as store:
        await store.append("order.1", {"type": "order.placed", "data": {"n": 1}})
    admin = await asyncpg.connect(postgres_url)
    try:  # back to schema version 2: what migrations 3 and later added goes
        await admin.execute(
            "DROP TRIGGER pepperpy_events_time_blocks ON pepperpy_events; "
            "DROP FUNCTION pepperpy_note_time_blocks(); DROP TABLE pepperpy_time_blocks; "
            "DROP INDEX pepperpy_events_type, pepperpy_events_category, "
            "pepperpy_streams_name_c; DELETE FROM pepperpy_schema_version WHERE version > 2"
        )
        async with EventStore(PostgresBackend(postgres_url, create=False)) as store:
            assert [event.data for event in await store.read_all(types="order.*")] == [{"n": 1}]
        versions = [
            row[0] for row in await admin.fetch("SELECT version FROM pepperpy_schema_version")
        ]
        assert sorted(versions)[:3] == [1, 2, 3]
        assert await admin.fetchval("SELECT count(*) FROM pepperpy_time_blocks") == 1
    finally:
        await admin.close()
