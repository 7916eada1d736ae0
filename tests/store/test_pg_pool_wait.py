"""A call waiting for a busy connection gives up within connect_timeout, saying so.

The event store's calls waited for one of its 8 pooled connections with no bound, and
the checkpoint store's for its one connection on the loop: with the server holding
every connection (a lock another session keeps), each caller waited for all those
queued before it, far past the documented bound (command_timeout + connect_timeout),
and then blamed a silent server. Here the server holds the connections for a
command_timeout of 60 s; a caller past them must fail within about connect_timeout
(1 s), long before anything frees.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from pepperpy.event import EventStore, StoreError
from pepperpy.event._checkpoints import PostgresCheckpointStore

asyncpg = pytest.importorskip("asyncpg")

OPTIONS = "?command_timeout=60&connect_timeout=1"


@contextlib.asynccontextmanager
async def locked(url: str, table: str) -> AsyncIterator[Any]:
    """``table`` locked by another session until the block ends."""
    blocker = await asyncpg.connect(url)
    try:
        transaction = blocker.transaction()
        await transaction.start()
        await blocker.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        try:
            yield blocker
        finally:
            await transaction.rollback()
    finally:
        await blocker.close()


async def waiting_on_locks(connection: Any, count: int) -> None:
    """Until ``count`` sessions wait for a lock (bounded)."""
    for _ in range(400):
        await connection.execute("SELECT pg_stat_clear_snapshot()")  # one per transaction
        waiting = await connection.fetchval(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        if waiting >= count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"only {waiting} sessions wait for the lock")


async def test_a_caller_past_the_busy_pool_fails_within_connect_timeout(
    postgres_url: str,
) -> None:
    async with EventStore(postgres_url + OPTIONS) as store:
        await store.append("s.1", {"type": "t", "data": {}})

        async def read() -> list[Any]:
            return list(await store.get_stream("s.1"))

        async with locked(postgres_url, "pepperpy_events") as blocker:
            holders = [asyncio.create_task(read()) for _ in range(8)]
            await waiting_on_locks(blocker, 8)
            with pytest.raises(StoreError) as caught:
                async with asyncio.timeout(30):  # the old code waited 60 s and more
                    await read()
            message = str(caught.value)
            assert "no pooled connection became free within 1 s (connect_timeout)" in message
            assert "all 8 connections of the pool were busy" in message
            assert caught.value.written is False
        # the lock gone, the calls holding the connections finish
        for events in await asyncio.gather(*holders):
            assert len(events) == 1
        assert len(await read()) == 1


async def test_a_checkpoint_call_past_the_busy_connection_fails_within_connect_timeout(
    postgres_url: str,
) -> None:
    checkpoints = PostgresCheckpointStore(postgres_url + OPTIONS)
    try:
        await checkpoints.save("z", 1, previous=None)  # the table is made (a load makes none)
        async with locked(postgres_url, "pepperpy_checkpoints") as blocker:
            holder = asyncio.create_task(checkpoints.load("a"))
            await waiting_on_locks(blocker, 1)
            with pytest.raises(StoreError) as caught:
                async with asyncio.timeout(30):  # the old code waited 60 s and more
                    await checkpoints.load("b")
            message = str(caught.value)
            assert "did not become free within 1 s (connect_timeout)" in message
            assert caught.value.written is False
        assert await holder is None
        assert await checkpoints.load("b") is None
    finally:
        await checkpoints.close()
