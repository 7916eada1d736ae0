"""TableProjection.load() waiting for the turn of a call whose handler closes it.

Projection.close() from a handler is final for the calls waiting for the turn: they
raise ClosedError without starting (tests/replay/test_projection_close_from_handler.py).
TableProjection.load() has its own body and skipped that check: waiting behind a
handler that closed the projection, it started anyway and opened the state store
again, a connection nothing closed. (On PostgreSQL only: SQLite table handlers are
plain functions on the database's thread, which cannot await close().)
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pepperpy.event import ClosedError, Event, EventStore, TableProjection
from pepperpy.event import _projection as projection_module
from pepperpy.event._checkpoints import CheckpointStore
from tests.helpers import eventually


@pytest.mark.postgres
async def test_a_table_load_waiting_for_the_turn_does_not_start(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[CheckpointStore] = []
    real = projection_module.open_checkpoint_store

    def recording(url: str | None) -> CheckpointStore:
        opened.append(real(url))
        return opened[-1]

    monkeypatch.setattr(projection_module, "open_checkpoint_store", recording)
    async with EventStore(postgres_url) as store:
        await store.append("clock.1", [Event("tick.tock") for _ in range(3)])

        async def setup(db: Any) -> None:
            await db.execute("CREATE TABLE IF NOT EXISTS ticks (position bigint PRIMARY KEY)")

        async def reset(db: Any) -> None:
            await db.execute("DELETE FROM ticks")

        projection = TableProjection("ticks", store, setup=setup, reset=reset, batch_size=1)
        waiting: list[asyncio.Future[Any]] = []

        async def tick(db: Any, event: Event) -> None:
            await db.execute("INSERT INTO ticks VALUES ($1)", event.global_position)
            if event.global_position == 1:
                waiting.append(asyncio.ensure_future(projection.load()))
                await eventually(lambda: len(projection._runs) == 2)  # in line for the turn
                await projection.close()

        projection.on("tick.*", tick)
        try:
            async with asyncio.timeout(30):
                report = await projection.run()
                [outcome] = await asyncio.gather(*waiting, return_exceptions=True)
        finally:
            await projection.close()
        assert report.replayed == 3
        assert isinstance(outcome, ClosedError), outcome
        assert "waited for its turn: it did not start" in str(outcome)
        assert len(opened) == 1  # the load did not open the state store again


@pytest.mark.postgres
async def test_a_table_handler_closing_its_projection_does_not_wait_for_itself(
    postgres_url: str,
) -> None:
    """A PostgreSQL table handler runs in the commit's own task (the commit is settled:
    it finishes even if the run is cancelled), which close() did not count as a
    handler: it waited for the run that was waiting for it, for ever."""
    async with EventStore(postgres_url) as store:
        await store.append("clock.1", [Event("tick.tock") for _ in range(3)])

        async def setup(db: Any) -> None:
            await db.execute("CREATE TABLE IF NOT EXISTS ticks (position bigint PRIMARY KEY)")

        projection = TableProjection("ticks", store, setup=setup, batch_size=1)

        async def tick(db: Any, event: Event) -> None:
            await db.execute("INSERT INTO ticks VALUES ($1)", event.global_position)
            if event.global_position == 1:
                await projection.close()

        projection.on("tick.*", tick)
        try:
            async with asyncio.timeout(30):
                report = await projection.run()
        finally:
            await asyncio.wait_for(projection.close(), 30)
        assert (report.replayed, projection.position) == (3, 2)
        async with TableProjection("ticks", store, setup=setup) as fresh:
            assert await fresh.load() == 2
