"""Projection.rebuild() cancelled while it deletes the saved state: memory follows the disk.

The delete cannot be taken back half-way (SQLite's runs in a worker thread, PostgreSQL
may commit a statement it received), and rebuild() used to reset the state in memory
only after it returned: cancelled in between, the projection kept its old state and
position while the disk held nothing, and its next run() failed with ConcurrencyError.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from typing import Any

import pytest

from pepperpy.event import (
    Checkpoint,
    CheckpointStore,
    Event,
    EventStore,
    MemoryCheckpointStore,
    Projection,
    StoreError,
)
from pepperpy.event._checkpoints import sqlite_path
from pepperpy.event._checkpoints_sqlite import _sqlite_delete
from tests.replay.observed import ObservedCheckpoints

EVENTS = 10


class LateDeletes(CheckpointStore):
    """Deletes that, once begun, complete even if their caller is cancelled (like a thread).

    A delete waits at ``gate`` (open unless a test closes it); ``deleting`` tells that
    one is waiting there. With ``fail`` set, the delete happens and then raises, as a
    connection lost after the server committed it.
    """

    def __init__(self) -> None:
        self.inner = MemoryCheckpointStore()
        self.gate = asyncio.Event()
        self.gate.set()
        self.deleting = asyncio.Event()
        self.fail = False

    async def load(self, name: str) -> Checkpoint | None:
        return await self.inner.load(name)

    async def save(
        self, name: str, position: int, state: Any = None, *, previous: int | None
    ) -> None:
        await self.inner.save(name, position, state, previous=previous)

    async def delete(self, name: str) -> bool:
        async def delete() -> bool:
            self.deleting.set()
            await self.gate.wait()
            deleted = await self.inner.delete(name)
            if self.fail:
                raise StoreError("connection lost: whether the delete happened is unknown")
            return deleted

        return await asyncio.shield(asyncio.ensure_future(delete()))

    async def names(self) -> list[str]:
        return await self.inner.names()


@pytest.fixture
async def store(sqlite_url: str) -> AsyncIterator[EventStore]:
    async with EventStore(sqlite_url) as events:
        await events.append("a", [Event("tick", {"n": n}) for n in range(EVENTS)])
        yield events


def tally(store: EventStore, state_store: CheckpointStore) -> Projection:
    projection = Projection("tally", store, state_store=state_store)

    @projection.on("tick")
    def count(state: dict[str, Any], event: Event) -> None:
        state["seen"] = state.get("seen", 0) + 1

    return projection


async def memory_follows_the_disk(projection: Projection, state_store: CheckpointStore) -> None:
    """In memory what is on disk; then new events are applied once each."""
    saved = await state_store.load("projection:tally")
    on_disk = (None, {}) if saved is None else (saved.position, saved.state)
    assert (projection.position, projection.state) == on_disk
    await projection.store.append("a", Event("tick", {"n": EVENTS}))
    await projection.run()  # raised ConcurrencyError (expected version 9, actual None)
    assert projection.state == {"seen": EVENTS + 1}
    assert projection.position == EVENTS


async def test_rebuild_cancelled_while_its_delete_finishes_late(store: EventStore) -> None:
    deletes = LateDeletes()
    projection = tally(store, deletes)
    await projection.run()
    deletes.gate.clear()
    task = asyncio.create_task(projection.rebuild())
    async with asyncio.timeout(10):
        await deletes.deleting.wait()
        task.cancel()
        deletes.gate.set()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert await deletes.load("projection:tally") is None  # the delete went through
    await memory_follows_the_disk(projection, deletes)


async def test_rebuild_cancelled_while_sqlite_holds_its_delete(
    store: EventStore, sqlite_url: str
) -> None:
    deletes = ObservedCheckpoints(sqlite_url, _sqlite_delete)
    projection = tally(store, deletes)
    await projection.run()
    other = sqlite3.connect(sqlite_path(sqlite_url), isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another writer holds the database
        task = asyncio.create_task(projection.rebuild())
        async with asyncio.timeout(20):
            await deletes.entered.wait()
            task.cancel()
            other.execute("COMMIT")
            with pytest.raises(asyncio.CancelledError):
                await task
    finally:
        other.close()
    assert await deletes.load("projection:tally") is None
    await memory_follows_the_disk(projection, deletes)
    await deletes.close()


async def test_a_rebuild_whose_delete_fails_takes_state_and_position_from_disk(
    store: EventStore,
) -> None:
    deletes = LateDeletes()
    projection = tally(store, deletes)
    await projection.run()
    assert projection.position == EVENTS - 1
    deletes.fail = True  # deleted, but the caller is told it failed
    with pytest.raises(StoreError):
        await projection.rebuild()
    deletes.fail = False
    await memory_follows_the_disk(projection, deletes)
