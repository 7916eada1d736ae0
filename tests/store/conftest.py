"""Fixtures shared by the PostgreSQL network-fault and cancellation tests of the store."""

from __future__ import annotations

import asyncio
import gc
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


@pytest.fixture
async def schema_admin(database: str, direct: str) -> AsyncIterator[Any]:
    """A connection to the test's own schema (made here, ahead of any store, so that the
    test can lay out old tables), dropped after the test."""
    asyncpg = pytest.importorskip("asyncpg")
    schema = direct.rsplit("schema=", 1)[1]
    connection = await asyncpg.connect(database)
    await connection.execute(f'CREATE SCHEMA "{schema}"')
    await connection.execute(f'SET search_path = "{schema}"')
    try:
        yield connection
    finally:
        try:
            await connection.execute(f'DROP SCHEMA "{schema}" CASCADE')
        finally:
            await connection.close()


@pytest.fixture
async def loop_errors() -> AsyncIterator[list[str]]:
    """Every call of the running loop's exception handler ('Task was destroyed but it is
    pending', an exception never retrieved), as 'message: exception'."""
    loop = asyncio.get_running_loop()
    seen: list[str] = []

    def record(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        seen.append(f"{context.get('message')}: {context.get('exception')!r}")

    previous = loop.get_exception_handler()
    loop.set_exception_handler(record)
    try:
        yield seen
    finally:
        loop.set_exception_handler(previous)


async def unread_errors(seen: list[str]) -> list[str]:
    """What the loop reported once every finished task and future was collected (an
    exception nobody read is reported when its future is destroyed)."""
    for _ in range(3):
        gc.collect()
        await asyncio.sleep(0.01)
    return seen
