"""Several processes opening stores at once on a fresh PostgreSQL database.

``CREATE TABLE IF NOT EXISTS`` is not safe under concurrency in PostgreSQL: two sessions
creating the same table at once can both find it missing, and one then fails on the
catalog's unique index (``pg_type_typname_nsp_index``). The checkpoint store (used by
replays and projections) did exactly that on first use; every piece of DDL now runs
under one advisory lock, as the event store's migrations always did.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest

from pepperpy.event import EventStore, Projection
from pepperpy.event._checkpoints import PostgresCheckpointStore
from tests.conftest import fresh_postgres_database

pytestmark = pytest.mark.postgres

#: one process: open a checkpoint store, event store and projection, all at once
WORKER = textwrap.dedent(
    """
    import asyncio, sys
    from pepperpy.event import EventStore, Projection
    from pepperpy.event._checkpoints import PostgresCheckpointStore

    async def main(url, n):
        checkpoints = [PostgresCheckpointStore(url) for _ in range(4)]
        async with EventStore(url) as store:
            projection = Projection(f"count-{n}", store, initial=0)
            projection.on("#", lambda state, event: state + 1)
            await asyncio.gather(
                *(c.load("x") for c in checkpoints),
                store.append(f"s.{n}", {"type": "t.x"}),
                projection.run(),
            )
            await projection.close()
        for c in checkpoints:
            await c.close()

    asyncio.run(main(sys.argv[1], sys.argv[2]))
    """
)


@pytest.fixture
def fresh_database(postgres_server: str) -> Iterator[str]:
    with fresh_postgres_database(postgres_server) as url:
        yield url


def run_at_once(url: str, processes: int) -> list[subprocess.CompletedProcess[str]]:
    started = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, url, str(n)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(processes)
    ]
    done = []
    for process in started:
        out, err = process.communicate(timeout=90)
        done.append(subprocess.CompletedProcess(process.args, process.returncode, out, err))
    return done


@pytest.mark.parametrize("schema", [None, "orders"])
def test_processes_opening_stores_at_once_on_a_fresh_database(
    postgres_server: str, schema: str | None
) -> None:
    for _ in range(3):  # a race: give it a few fresh databases to show up on
        with fresh_postgres_database(postgres_server) as url:
            if schema is not None:
                url += f"?schema={schema}"
            for result in run_at_once(url, 6):
                assert result.returncode == 0, result.stderr
                assert "pg_type" not in result.stderr


async def test_checkpoint_stores_at_once_in_one_process(fresh_database: str) -> None:
    for round_ in range(5):
        stores = [PostgresCheckpointStore(f"{fresh_database}?schema=s{round_}") for _ in range(8)]
        try:
            results = await asyncio.gather(*(s.load("x") for s in stores), return_exceptions=True)
            assert results == [None] * 8, results
        finally:
            for store in stores:
                await store.close()


async def test_checkpoints_live_in_the_store_schema(fresh_database: str) -> None:
    """With ?schema=name the checkpoints were refused: asyncpg took schema for a setting."""
    counts = {}
    for schema, events in (("shop", 2), ("billing", 3)):
        async with EventStore(f"{fresh_database}?schema={schema}") as store:
            for _ in range(events):
                await store.append("s.1", {"type": "t.x"})
            async with Projection("count", store, initial=0) as projection:
                projection.on("#", lambda state, event: state + 1)
                await projection.run()
                counts[schema] = projection.state
    assert counts == {"shop": 2, "billing": 3}  # one name, one checkpoint per schema
    checkpoints = PostgresCheckpointStore(f"{fresh_database}?schema=shop")
    try:
        saved = await checkpoints.load("projection:count")
        assert saved is not None and saved.state == 2
    finally:
        await checkpoints.close()
