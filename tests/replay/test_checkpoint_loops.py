"""PostgreSQL checkpoints from one event loop after another, and connections never left open."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator

import asyncpg
import pytest

from pepperpy.event import EventReplay, EventStore, PostgresCheckpointStore, StoreError
from tests.conftest import unique_name

pytestmark = pytest.mark.postgres


async def _admin(server: str, sql: str) -> None:
    connection = await asyncpg.connect(f"{server}/postgres")
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


async def _connections_left(server: str, name: str) -> int:
    """Server connections to database ``name``, once closed ones are gone (up to 5 s)."""
    connection = await asyncpg.connect(f"{server}/postgres")
    try:
        for _ in range(100):
            count = int(
                await connection.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = $1", name
                )
            )
            if count == 0:
                break
            await asyncio.sleep(0.05)
        return count
    finally:
        await connection.close()


@pytest.fixture
def database(postgres_server: str) -> Iterator[tuple[str, str]]:
    """A fresh database (made and dropped outside the test's loops): (url, name)."""
    name = unique_name("pepperpy_cpl")
    asyncio.run(_admin(postgres_server, f'CREATE DATABASE "{name}"'))
    yield f"{postgres_server}/{name}", name
    asyncio.run(_admin(postgres_server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def test_checkpoints_work_on_a_second_event_loop(
    postgres_server: str, database: tuple[str, str]
) -> None:
    url, name = database
    checkpoints = PostgresCheckpointStore(url)

    async def first() -> None:
        await checkpoints.save("projection", 1, {"n": 1}, previous=None)

    async def second() -> int | None:
        try:
            await checkpoints.save("projection", 2, {"n": 2}, previous=1)
            loaded = await checkpoints.load("projection")
            return None if loaded is None else loaded.position
        finally:
            await checkpoints.close()

    asyncio.run(first())  # ends without closing: the loop's connection goes with it
    gc.collect()  # an unclosed socket would warn (an error in this suite)
    assert asyncio.run(_connections_left(postgres_server, name)) == 0
    assert asyncio.run(second()) == 2
    gc.collect()
    assert asyncio.run(_connections_left(postgres_server, name)) == 0


def test_a_replay_with_checkpoints_runs_again_on_a_second_event_loop(
    postgres_server: str, database: tuple[str, str]
) -> None:
    url, name = database
    store = EventStore(url)
    replay = EventReplay(store)
    seen: list[str] = []
    replay.handle("#")(lambda event: seen.append(event.type))

    async def first() -> None:
        await store.append("orders.1", {"type": "placed"})
        await replay.replay_stream("orders.1", checkpoint="cp")

    async def second() -> None:
        try:
            await store.append("orders.1", {"type": "paid"})
            await replay.replay_stream("orders.1", checkpoint="cp")  # resumes after "placed"
        finally:
            await replay.close()
            await store.close()

    asyncio.run(first())
    asyncio.run(second())
    gc.collect()
    assert seen == ["placed", "paid"]
    assert asyncio.run(_connections_left(postgres_server, name)) == 0


async def test_checkpoints_on_loops_in_two_threads_and_close_from_one(
    postgres_server: str, database: tuple[str, str]
) -> None:
    url, name = database
    checkpoints = PostgresCheckpointStore(url)
    await checkpoints.save("here", 1, previous=None)

    def other_thread() -> None:
        async def work() -> None:
            await checkpoints.save("there", 1, previous=None)

        asyncio.run(work())

    await asyncio.to_thread(other_thread)
    assert (await checkpoints.load("there")) is not None
    await checkpoints.close()
    assert await _connections_left(postgres_server, name) == 0


async def test_a_failing_table_setup_closes_its_connection(
    postgres_server: str, database: tuple[str, str]
) -> None:
    url, name = database
    # a table from before revisions were kept: the first connection must bring it up to
    # date, which a read-only session cannot (reads no longer create a missing table)
    old = await asyncpg.connect(url)
    try:
        await old.execute(
            "CREATE TABLE pepperpy_checkpoints (name TEXT PRIMARY KEY, position BIGINT "
            "NOT NULL, state BYTEA, updated_at TIMESTAMPTZ NOT NULL)"
        )
    finally:
        await old.close()
    checkpoints = PostgresCheckpointStore(f"{url}?default_transaction_read_only=on")
    with pytest.raises(StoreError, match="cannot open PostgreSQL checkpoint store"):
        await checkpoints.load("projection")
    assert await _connections_left(postgres_server, name) == 0
    await checkpoints.close()


async def test_a_failing_create_table_on_a_write_leaves_no_connection_after_close(
    postgres_server: str, database: tuple[str, str]
) -> None:
    url, name = database
    checkpoints = PostgresCheckpointStore(f"{url}?default_transaction_read_only=on")
    assert await checkpoints.load("projection") is None  # a read creates nothing
    with pytest.raises(StoreError, match="read-only transaction"):
        await checkpoints.save("projection", 1, previous=None)
    await checkpoints.close()
    assert await _connections_left(postgres_server, name) == 0
