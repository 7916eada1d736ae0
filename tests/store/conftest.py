"""Fixtures shared by the PostgreSQL network-fault and cancellation tests of the store."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from tests.conftest import fresh_postgres_database, unique_name
from tests.store.pgfaultproxy import PgFaultProxy


@pytest.fixture(scope="module")
def database(postgres_server: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """One database for the module (named after it); each test works in a schema of its own."""
    prefix = "pepperpy_" + request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    with fresh_postgres_database(postgres_server, prefix=prefix) as url:
        yield url


@pytest.fixture
def direct(database: str) -> str:
    """This test's store URL, straight to the server: a schema of its own."""
    return f"{database}?schema={unique_name('s')}"


@pytest.fixture
async def proxy() -> AsyncIterator[PgFaultProxy]:
    """A fault proxy in front of the PostgreSQL server (tests/faultproxy.py)."""
    async with PgFaultProxy() as started:
        yield started


@pytest.fixture
async def admin(database: str) -> AsyncIterator[Any]:
    """A plain asyncpg connection to the module's database, to look at or edit rows."""
    asyncpg = pytest.importorskip("asyncpg")
    connection = await asyncpg.connect(database)
    try:
        yield connection
    finally:
        await connection.close()
