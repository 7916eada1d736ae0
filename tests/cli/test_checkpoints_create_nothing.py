"""``pepperpy-event checkpoints`` on a store that never saved one makes no table.

A checkpoint store makes its table on first use, so listing the checkpoints of a store
without any created ``pepperpy_checkpoints`` there (DDL from a reading command, on
PostgreSQL and SQLite), and with a PostgreSQL role that may only read it failed with
"cannot open PostgreSQL checkpoint store ...: permission denied for schema public"
instead of listing none.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pepperpy.event import Event, EventStore
from tests.cli.conftest import Cli
from tests.conftest import unique_name


def _append(url: str) -> None:
    async def write() -> None:
        async with EventStore(url) as store:
            await store.append("order.1", Event("order.placed", {"n": 1}))

    asyncio.run(write())


def _pg(url: str, sql: str) -> list[Any]:
    asyncpg = pytest.importorskip("asyncpg")

    async def run() -> list[Any]:
        connection = await asyncpg.connect(url)
        try:
            return [tuple(row) for row in await connection.fetch(sql)]
        finally:
            await connection.close()

    return asyncio.run(run())


def _pg_tables(url: str) -> list[str]:
    rows = _pg(url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    return sorted(name for (name,) in rows)


@pytest.fixture
def reader_role(postgres_url: str) -> Iterator[str]:
    """A role of this test's that may log in and only read the store's tables."""
    role = unique_name("reader")
    _append(postgres_url)
    _pg(postgres_url, f'CREATE ROLE "{role}" LOGIN')
    try:
        _pg(postgres_url, f'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{role}"')
        _pg(postgres_url, "REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        yield role
    finally:
        _pg(postgres_url, f'DROP OWNED BY "{role}"')
        _pg(postgres_url, f'DROP ROLE "{role}"')


@pytest.mark.postgres
def test_postgres_store_without_checkpoints_lists_none_and_makes_nothing(
    cli: Cli, postgres_url: str
) -> None:
    _append(postgres_url)
    before = _pg_tables(postgres_url)
    listed = cli("checkpoints", "--store", postgres_url)
    assert (listed.code, listed.out, listed.err) == (0, "", "")
    assert "pepperpy_checkpoints" not in before
    assert _pg_tables(postgres_url) == before


@pytest.mark.postgres
def test_a_role_that_only_reads_lists_none(cli: Cli, postgres_url: str, reader_role: str) -> None:
    as_reader = postgres_url.replace("://postgres@", f"://{reader_role}@", 1)
    assert as_reader != postgres_url
    listed = cli("checkpoints", "--store", as_reader)
    assert (listed.code, listed.out, listed.err) == (0, "", "")


@pytest.mark.postgres
def test_saved_checkpoints_are_still_listed(cli: Cli, postgres_url: str) -> None:
    _append(postgres_url)
    replayed = cli("replay", "-q", "--checkpoint", "nightly", "--store", postgres_url)
    assert replayed.code == 0, replayed
    listed = cli("checkpoints", "--store", postgres_url)
    assert listed.code == 0, listed
    assert [line.split()[:3] for line in listed.lines] == [["replay:nightly", "0", "0"]]


def test_sqlite_store_without_checkpoints_makes_no_table(
    cli: Cli, tmp_path: Path, store_url: str
) -> None:
    _append(store_url)
    listed = cli("checkpoints", "--store", store_url)
    assert (listed.code, listed.out, listed.err) == (0, "", "")
    with sqlite3.connect(tmp_path / "store.db") as connection:
        tables = [row[0] for row in connection.execute("SELECT name FROM sqlite_master")]
    connection.close()
    assert "pepperpy_checkpoints" not in tables
    assert "events" in tables
