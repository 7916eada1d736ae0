"""PostgreSQL store setup: a schema newer than this library's is refused, and a role
without CREATE rights uses a store its owner created and migrated."""

from __future__ import annotations

import asyncpg
import pytest

from pepperpy.event import EventStore, StoreError
from pepperpy.event.store import _pg_schema
from tests.conftest import unique_name

pytestmark = pytest.mark.postgres


async def _admin(url: str, sql: str) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(url)
    try:
        return list(await connection.fetch(sql))
    finally:
        await connection.close()


@pytest.mark.parametrize("schema", [None, "n1"])
async def test_a_schema_newer_than_this_library_is_refused_and_left_as_it_is(
    postgres_url: str, schema: str | None
) -> None:
    url = postgres_url if schema is None else f"{postgres_url}?schema={schema}"
    table = "pepperpy_schema_version" if schema is None else f"{schema}.pepperpy_schema_version"
    events = "pepperpy_events" if schema is None else f"{schema}.pepperpy_events"
    async with EventStore(url) as store:
        await store.append("a.1", {"type": "x"})
    # a newer pepperpy-event migrated it further (a rolled-back deployment, say)
    await _admin(postgres_url, f"INSERT INTO {table} (version) VALUES (99)")
    known = len(_pg_schema._MIGRATIONS)
    async with EventStore(url) as store:
        with pytest.raises(StoreError) as raised:
            await store.append("a.1", {"type": "y"})
        message = str(raised.value)
        assert "schema version 99" in message
        assert f"newer than this pepperpy-event knows ({known})" in message
        assert raised.value.written is False
        with pytest.raises(StoreError, match="schema version 99"):
            await store.read_all()
    rows = await _admin(postgres_url, f"SELECT type FROM {events}")
    assert [row[0] for row in rows] == ["x"]
    versions = await _admin(postgres_url, f"SELECT version FROM {table} ORDER BY 1")
    assert [row[0] for row in versions] == [*range(1, known + 1), 99]


@pytest.mark.parametrize("schema", [None, "r1"])
async def test_a_role_without_create_rights_uses_a_store_already_up_to_date(
    postgres_url: str, postgres_server: str, schema: str | None
) -> None:
    # the usual split: the owner runs the DDL, the application's role has DML only.
    # Every open ran CREATE SCHEMA/TABLE IF NOT EXISTS, whose privilege PostgreSQL
    # checks before it looks for the object: that role could not even read
    suffix = "" if schema is None else f"?schema={schema}"
    where = "public" if schema is None else schema
    role = unique_name("ro")
    database = postgres_url.rsplit("/", 1)[1]
    await _admin(postgres_url, "REVOKE CREATE ON SCHEMA public FROM PUBLIC")
    async with EventStore(postgres_url + suffix) as owner:
        await owner.append("a.1", {"type": "by.owner"})
    await _admin(postgres_url, f"CREATE ROLE \"{role}\" LOGIN PASSWORD 'pw' NOCREATEDB")
    try:
        await _admin(postgres_url, f'GRANT USAGE ON SCHEMA "{where}" TO "{role}"')
        await _admin(
            postgres_url,
            f'GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA "{where}" TO "{role}"',
        )
        host = postgres_server.split("@", 1)[1]
        url = f"postgresql://{role}:pw@{host}/{database}{suffix}"
        async with EventStore(url) as store:
            assert [e.type for e in await store.get_stream("a.1")] == ["by.owner"]
            await store.append("a.1", {"type": "by.role"})
            assert [e.type for e in await store.get_stream("a.1")] == ["by.owner", "by.role"]
        # a store behind is still refused clearly: migrating needs the owner
        await _admin(
            postgres_url,
            f'DELETE FROM "{where}".pepperpy_schema_version '
            f"WHERE version = {len(_pg_schema._MIGRATIONS)}",
        )
        async with EventStore(url) as store:
            with pytest.raises(StoreError, match="schema setup failed: permission denied"):
                await store.get_stream("a.1")
    finally:
        await _admin(postgres_url, f'DROP OWNED BY "{role}"')
        await _admin(f"{postgres_server}/postgres", f'DROP ROLE IF EXISTS "{role}"')
