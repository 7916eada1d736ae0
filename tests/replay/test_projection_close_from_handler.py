"""Projection.close() from a handler is final for the calls under way.

close() from a handler does not wait for the call it is made from (it would wait for
itself), nor for the calls waiting for that call's turn. It closed the state store at
once all the same, so the calling run's next commit opened it again, and so did every
run(), rebuild() and load() that had been waiting for the turn: connections nothing
closed, after the projection was closed. Now the calling call ends as it would after
any close() (a run at the head it began with, a follow() after its live batch),
committing to the state store still open, which is closed as that call lets go of its
turn; the calls waiting for the turn then raise ClosedError without starting.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pepperpy.event import (
    ClosedError,
    Event,
    EventStore,
    PostgresCheckpointStore,
    Projection,
    SQLiteCheckpointStore,
)
from pepperpy.event import _projection as projection_module
from pepperpy.event._checkpoints import CheckpointStore
from tests.helpers import eventually


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[CheckpointStore]:
    """Every state store a projection opens, in order."""
    stores: list[CheckpointStore] = []
    real = projection_module.open_checkpoint_store

    def recording(url: str | None) -> CheckpointStore:
        store = real(url)
        stores.append(store)
        return store

    monkeypatch.setattr(projection_module, "open_checkpoint_store", recording)
    return stores


def holds_nothing(store: CheckpointStore) -> bool:
    """Whether ``store`` holds no connection (closed, and not opened again since)."""
    if isinstance(store, SQLiteCheckpointStore):
        return store._db is None
    if isinstance(store, PostgresCheckpointStore):
        return all(share.connection is None for share in store._loops.values())
    return True  # memory: nothing to hold


async def saved(store: EventStore) -> tuple[Any, int | None]:
    async with Projection("counter", store, initial=lambda: {"n": 0}) as fresh:
        return await fresh.load(), fresh.position


async def test_the_calling_run_ends_without_opening_the_state_store_again(
    any_store_url: str, opened: list[CheckpointStore]
) -> None:
    async with EventStore(any_store_url) as store:
        await store.append("clock.1", [Event("tick.tock") for _ in range(5)])
        projection = Projection("counter", store, initial=lambda: {"n": 0}, batch_size=1)
        kept: list[bool] = []

        async def count(state: dict[str, int], event: Event) -> dict[str, int]:
            if state["n"] == 1:
                await projection.close()  # bounded below: it must not wait for this run
                kept.append(projection._state_store is opened[0])  # the run commits there
            return {"n": state["n"] + 1}

        projection.on("tick.*", count)
        async with asyncio.timeout(30):
            report = await projection.run()
        assert (report.replayed, projection.state, projection.position) == (5, {"n": 5}, 4)
        assert len(opened) == 1  # the old code opened a second after the close
        assert kept == [True]
        assert projection._state_store is None and holds_nothing(opened[0])
        assert await saved(store) == ({"n": 5}, 4)

        # a call made after close() returned uses the projection again, as after any
        await store.append("clock.1", Event("tick.tock"))
        projection.off("tick.*", count)
        projection.on("tick.*", lambda state, event: {"n": state["n"] + 1})
        before = len(opened)
        assert (await projection.run()).replayed == 1
        await projection.close()
        assert len(opened) == before + 1 and holds_nothing(opened[-1])


async def test_calls_waiting_for_the_turn_do_not_start(
    any_store_url: str, opened: list[CheckpointStore]
) -> None:
    async with EventStore(any_store_url) as store:
        await store.append("clock.1", [Event("tick.tock") for _ in range(3)])
        projection = Projection("counter", store, initial=lambda: {"n": 0}, batch_size=1)
        waiting: list[asyncio.Future[Any]] = []

        async def count(state: dict[str, int], event: Event) -> dict[str, int]:
            if state["n"] == 1 and not waiting:
                waiting.extend(
                    asyncio.ensure_future(call())
                    for call in (projection.run, projection.rebuild, projection.load)
                )
                # each is counted as it starts, and in line for the turn in the same step
                await eventually(lambda: len(projection._runs) == 4)
                await projection.close()
            return {"n": state["n"] + 1}

        projection.on("tick.*", count)
        async with asyncio.timeout(30):
            report = await projection.run()
            outcomes = await asyncio.gather(*waiting, return_exceptions=True)
        assert (report.replayed, projection.position) == (3, 2)
        for outcome in outcomes:
            assert isinstance(outcome, ClosedError), outcome
            assert "waited for its turn: it did not start" in str(outcome)
        assert len(opened) == 1  # none of them opened the state store again
        assert projection._state_store is None and holds_nothing(opened[0])
        assert await saved(store) == ({"n": 3}, 2)  # the rebuild did not start over


async def test_a_follower_closed_by_its_handler_commits_its_batch_and_returns(
    any_store_url: str, opened: list[CheckpointStore]
) -> None:
    async with EventStore(any_store_url) as store:
        await store.append("clock.1", Event("tick.tock"))
        projection = Projection("counter", store, initial=lambda: {"n": 0})

        async def count(state: dict[str, int], event: Event) -> dict[str, int]:
            if state["n"] == 1:  # the first live event
                await projection.close()
            return {"n": state["n"] + 1}

        projection.on("tick.*", count)
        follower = asyncio.ensure_future(projection.follow())
        async with asyncio.timeout(30):
            await eventually(lambda: len(projection._live) == 1)  # live
            await store.append("clock.1", [Event("tick.tock") for _ in range(3)])
            assert await follower is None
        assert len(opened) == 1
        assert projection._state_store is None and holds_nothing(opened[0])
        state, position = await saved(store)
        assert position is not None and position >= 1  # the batch with the close committed
        assert state == {"n": position + 1}
        await projection.close()
