"""PostgreSQL store setup: a schema newer than this library's is refused, and a role
without CREATE rights uses a store its owner created and migrated."""

from __future__ import annotations

import asyncpg
import pytest

from pepperpy.event import EventStore, StoreError
from pepperpy.event.store import _pg_schema

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
