"""The PostgreSQL checkpoint store's reads create nothing.

It created its table (``pepperpy_checkpoints``) on a loop's first call, reads included,
so ``names()``, ``load()`` and ``delete()`` of a missing name on a database where nothing
was saved ran DDL, and with a role that may only read (no ``CREATE`` on the schema) they
failed ("cannot open PostgreSQL checkpoint store ...: permission denied for schema
public") instead of finding none. Now reads answer as on an empty table and create
nothing; the first write creates the table (and the ``?schema=`` schema), and a table
another store creates meanwhile is read at once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from pepperpy.event import Event, EventProcessor, EventStore, StoreError
from pepperpy.event._checkpoints_pg import PostgresCheckpointStore
from tests.conftest import unique_name

pytestmark = pytest.mark.postgres

asyncpg = pytest.importorskip("asyncpg")


async def _admin(url: str, sql: str) -> list[Any]:
    connection = await asyncpg.connect(url)
    try:
        return [tuple(row) for row in await connection.fetch(sql)]
    finally:
        await connection.close()


async def _relations(url: str) -> list[tuple[str, str]]:
    """Every table and schema of the database that is not the server's own."""
    rows = await _admin(
        url,
        "SELECT nspname, coalesce(relname, '') FROM pg_namespace LEFT JOIN pg_class "
        "ON relnamespace = pg_namespace.oid AND relkind = 'r' "
        "WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema'",
    )
    return sorted((str(a), str(b)) for a, b in rows)


@pytest.fixture
async def reader_url(postgres_url: str) -> AsyncIterator[str]:
    """The URL of a role of this test's that may connect and read, and create nothing."""
    role = unique_name("reader")
    database = postgres_url.rsplit("/", 1)[1]
    await _admin(postgres_url, f'CREATE ROLE "{role}" LOGIN')
    try:
        for sql in (
            f'REVOKE ALL ON DATABASE "{database}" FROM PUBLIC',
            f'GRANT CONNECT ON DATABASE "{database}" TO "{role}"',
            "REVOKE CREATE ON SCHEMA public FROM PUBLIC",
            f'GRANT USAGE ON SCHEMA public TO "{role}"',
            f'ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO "{role}"',
        ):
            await _admin(postgres_url, sql)
        yield postgres_url.replace("://postgres@", f"://{role}@", 1)
    finally:
        await _admin(postgres_url, f'DROP OWNED BY "{role}"')
        await _admin(postgres_url, f'DROP ROLE "{role}"')


async def test_a_role_that_only_reads_finds_none_then_reads_what_another_saved(
    postgres_url: str, reader_url: str
) -> None:
    assert reader_url != postgres_url
    before = await _relations(postgres_url)
    reader = PostgresCheckpointStore(reader_url)
    owner = PostgresCheckpointStore(postgres_url)
    try:
        assert await reader.names() == []
        assert await reader.load("nightly") is None
        assert await reader.delete("nightly") is False
        assert await _relations(postgres_url) == before  # nothing made
        with pytest.raises(StoreError, match="permission denied"):
            await reader.save("nightly", 3, previous=None)  # a write still makes the table

        # another store creates the table meanwhile: the reader's connection sees it
        await owner.save("nightly", 7, {"n": 1}, previous=None)
        assert await reader.names() == ["nightly"]
        loaded = await reader.load("nightly")
        assert loaded is not None
        assert (loaded.position, loaded.state) == (7, {"n": 1})
        with pytest.raises(StoreError, match="permission denied"):
            await reader.delete("nightly")  # a delete is a write once there is a table
    finally:
        await reader.close()
        await owner.close()


async def test_reads_make_no_table_and_the_first_write_does(postgres_url: str) -> None:
    before = await _relations(postgres_url)
    store = PostgresCheckpointStore(postgres_url)
    try:
        assert (await store.names(), await store.load("a"), await store.delete("a")) == (
            [],
            None,
            False,
        )
        assert await _relations(postgres_url) == before
        revision = await store.save("a", 1, previous=None)
        assert ("public", "pepperpy_checkpoints") in await _relations(postgres_url)
        loaded = await store.load("a")
        assert loaded is not None and loaded.revision == revision
        assert await store.names() == ["a"]
        assert await store.delete("a") is True
    finally:
        await store.close()


async def test_a_schema_option_reads_none_and_makes_the_schema_on_the_first_write(
    postgres_url: str,
) -> None:
    schema = unique_name("cp")
    before = await _relations(postgres_url)
    store = PostgresCheckpointStore(f"{postgres_url}?schema={schema}")
    try:
        assert await store.names() == []
        assert await store.load("a") is None
        assert await store.delete("a") is False
        assert await _relations(postgres_url) == before  # neither schema nor table

        await store.save("a", 2, previous=None)
        assert (schema, "pepperpy_checkpoints") in await _relations(postgres_url)
        assert ("public", "pepperpy_checkpoints") not in await _relations(postgres_url)
        assert await store.names() == ["a"]
    finally:
        await store.close()


async def test_save_within_creates_the_table(postgres_url: str) -> None:
    store = PostgresCheckpointStore(postgres_url)
    try:
        assert await store.names() == []

        async def work(connection: Any) -> None:
            await connection.execute("CREATE TABLE mine (n INT)")

        await store.save_within("t", 5, previous=None, work=work)
        loaded = await store.load("t")
        assert loaded is not None and loaded.position == 5
    finally:
        await store.close()


async def test_reset_checkpoint_by_a_role_that_only_reads_finds_none(
    postgres_url: str, reader_url: str
) -> None:
    async with EventStore(postgres_url) as owned:  # the event store's tables, the owner's
        await owned.append("order.1", Event("order.placed", {"n": 1}))
    before = await _relations(postgres_url)
    async with EventStore(reader_url) as store:
        assert await EventProcessor().reset_checkpoint(store, "nightly") is False
    assert await _relations(postgres_url) == before
