"""Cancelled while saving a checkpoint: CancelledError, and the checkpoint's outcome known.

A save cannot be stopped half-way (SQLite's runs in a worker thread), so a replay or a
projection cancelled during one waits for it, records where the checkpoint now is, and
then lets the cancellation through: no ConcurrencyError from its own earlier save, and
resuming neither repeats nor loses an event.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from pepperpy.event import (
    Checkpoint,
    CheckpointStore,
    Event,
    EventReplay,
    EventStore,
    MemoryCheckpointStore,
    Projection,
)
from pepperpy.event._checkpoints import sqlite_path
from pepperpy.event._checkpoints_sqlite import _sqlite_save
from pepperpy.event._loops import settled
from tests.replay.observed import ObservedCheckpoints

EVENTS = 10


class LateCommits(CheckpointStore):
    """Saves that, once begun, complete even if their caller is cancelled (like a thread).

    Each save waits at ``gate`` (open unless a test closes it); ``saving`` tells that one
    is waiting there. Loads do not wait for saves in flight.
    """

    def __init__(self) -> None:
        self.inner = MemoryCheckpointStore()
        self.gate = asyncio.Event()
        self.gate.set()
        self.saving = asyncio.Event()
        self.writes: list[asyncio.Task[None]] = []

    async def load(self, name: str) -> Checkpoint | None:
        return await self.inner.load(name)

    async def delete(self, name: str) -> bool:
        return await self.inner.delete(name)

    async def names(self) -> list[str]:
        return await self.inner.names()

    async def save(
        self, name: str, position: int, state: Any = None, *, previous: int | None
    ) -> None:
        if name.startswith("scope:"):  # a projection's scope, recorded before its state
            await self.inner.save(name, position, state, previous=previous)
            return

        async def write() -> None:
            self.saving.set()
            await self.gate.wait()
            await self.inner.save(name, position, state, previous=previous)

        self.writes.append(asyncio.create_task(write()))
        await asyncio.shield(self.writes[-1])


@pytest.fixture
async def store(sqlite_url: str) -> AsyncIterator[EventStore]:
    async with EventStore(sqlite_url) as events:
        await events.append("a", [Event("tick", {"n": n}) for n in range(EVENTS)])
        yield events


async def cancel_during_save(
    task: asyncio.Task[Any], saving: asyncio.Event, release: Callable[[], None]
) -> None:
    """Cancel ``task`` while its first save is blocked, then let the save go on."""
    async with asyncio.timeout(20):
        await saving.wait()
        task.cancel()
        release()
        with pytest.raises(asyncio.CancelledError):
            await task


# -- replay ------------------------------------------------------------------------------


def ticks(replay: EventReplay) -> list[int]:
    seen: list[int] = []
    replay.handle("tick", lambda event: seen.append(event.data["n"]))
    return seen


async def test_replay_cancelled_while_sqlite_holds_its_save(
    store: EventStore, sqlite_url: str
) -> None:
    checkpoints = ObservedCheckpoints(sqlite_url, _sqlite_save)
    # the table exists before the lock is taken (a read makes none: the first write does)
    await checkpoints.prepare(lambda connection: None)
    replay = EventReplay(store, checkpoints=checkpoints)
    seen = ticks(replay)
    other = sqlite3.connect(sqlite_path(sqlite_url), isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another writer holds the database
        task = asyncio.create_task(replay.replay_stream("a", checkpoint="x", checkpoint_every=3))
        await cancel_during_save(task, checkpoints.entered, lambda: other.execute("COMMIT"))
    finally:
        other.close()
    assert seen == [0, 1, 2]
    saved = await checkpoints.load("replay:x")
    assert saved is not None and saved.position == 2  # the save in flight went through

    again = EventReplay(store, checkpoints=checkpoints)
    rest = ticks(again)
    await again.replay_stream("a", checkpoint="x")
    assert rest == list(range(3, EVENTS))
    await checkpoints.close()


async def test_replay_cancelled_while_a_save_finishes_late(store: EventStore) -> None:
    checkpoints = LateCommits()
    checkpoints.gate.clear()
    replay = EventReplay(store, checkpoints=checkpoints)
    ticks(replay)
    task = asyncio.create_task(replay.replay_stream("a", checkpoint="x", checkpoint_every=3))
    await cancel_during_save(task, checkpoints.saving, checkpoints.gate.set)
    await asyncio.gather(*checkpoints.writes)
    saved = await checkpoints.load("replay:x")
    assert saved is not None and saved.position == 2

    again = EventReplay(store, checkpoints=checkpoints)
    rest = ticks(again)
    await again.replay_stream("a", checkpoint="x")
    assert rest == list(range(3, EVENTS))


# -- projections -------------------------------------------------------------------------


def tally(store: EventStore, state_store: CheckpointStore) -> Projection:
    projection = Projection("tally", store, state_store=state_store, batch_size=3)

    @projection.on("tick")
    def count(state: dict[str, Any], event: Event) -> None:
        state.setdefault("seen", []).append(event.data["n"])

    return projection


async def expect_consistent_then_exactly_once(
    projection: Projection, state_store: CheckpointStore
) -> None:
    saved = await state_store.load("projection:tally")
    assert saved is not None and saved.position == 2  # the save in flight went through
    assert (projection.position, projection.state) == (saved.position, saved.state)
    await projection.run()
    assert projection.state == {"seen": list(range(EVENTS))}
    fresh = tally(projection.store, state_store)
    assert await fresh.load() == {"seen": list(range(EVENTS))}


async def test_projection_cancelled_while_a_save_finishes_late(store: EventStore) -> None:
    checkpoints = LateCommits()
    checkpoints.gate.clear()
    projection = tally(store, checkpoints)
    task = asyncio.create_task(projection.run())
    await cancel_during_save(task, checkpoints.saving, checkpoints.gate.set)
    await asyncio.gather(*checkpoints.writes)
    await expect_consistent_then_exactly_once(projection, checkpoints)


async def test_projection_cancelled_while_sqlite_holds_its_save(
    store: EventStore, sqlite_url: str
) -> None:
    checkpoints = ObservedCheckpoints(sqlite_url, _sqlite_save)
    await checkpoints.prepare(lambda connection: None)  # the table, before the lock is taken
    projection = tally(store, checkpoints)
    await projection._record_scope()  # the save held below is the state's, not the scope's
    checkpoints.entered.clear()
    other = sqlite3.connect(sqlite_path(sqlite_url), isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        task = asyncio.create_task(projection.run())
        await cancel_during_save(task, checkpoints.entered, lambda: other.execute("COMMIT"))
    finally:
        other.close()
    await expect_consistent_then_exactly_once(projection, checkpoints)
    await checkpoints.close()


# -- settled -----------------------------------------------------------------------------


async def test_settled_finishes_before_the_cancellation_goes_on() -> None:
    started, gate = asyncio.Event(), asyncio.Event()
    finished: list[str] = []

    async def operation() -> str:
        started.set()
        await gate.wait()
        finished.append("done")
        return "done"

    task = asyncio.create_task(settled(operation()))
    async with asyncio.timeout(10):
        await started.wait()
        task.cancel()
        await asyncio.sleep(0)
        task.cancel()  # a second cancellation does not cut the wait short either
        gate.set()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert finished == ["done"]
    assert await settled(operation()) == "done"  # no cancellation: the result


async def test_settled_under_a_timeout_raises_timeout_after_the_operation() -> None:
    gate = asyncio.Event()
    finished: list[bool] = []

    async def operation() -> None:
        await gate.wait()
        finished.append(True)

    asyncio.get_running_loop().call_later(0.05, gate.set)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await settled(operation())
    assert finished == [True]


async def test_settled_chains_a_failure_to_the_cancellation() -> None:
    started, gate = asyncio.Event(), asyncio.Event()

    async def operation() -> None:
        started.set()
        await gate.wait()
        raise RuntimeError("save failed")

    raised: list[BaseException] = []

    async def caller() -> None:
        try:
            await settled(operation())
        except BaseException as exc:
            raised.append(exc)
            raise

    task = asyncio.create_task(caller())
    async with asyncio.timeout(10):
        await started.wait()
        task.cancel()
        gate.set()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert isinstance(raised[0], asyncio.CancelledError)
    assert isinstance(raised[0].__cause__, RuntimeError)
    with pytest.raises(RuntimeError, match="save failed"):
        await settled(operation())  # no cancellation: the exception itself
