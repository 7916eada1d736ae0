"""Projections: folding events into state, resuming, rebuilding, following live."""

from __future__ import annotations

import asyncio
import functools
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from pepperpy.event import (
    ConcurrencyError,
    Event,
    EventStore,
    MemoryCheckpointStore,
    Projection,
    ReplayError,
    SerializationError,
    StoreError,
)
from tests.helpers import eventually


def totals(store: EventStore, **options: Any) -> Projection:
    projection = Projection("totals", store, **options)

    @projection.on("order.placed")
    def placed(state: dict[str, Any], event: Event) -> None:
        state["orders"] = state.get("orders", 0) + 1
        state["revenue"] = state.get("revenue", 0) + event.data["amount"]

    @projection.on("order.cancelled")
    async def cancelled(state: dict[str, Any], event: Event) -> dict[str, Any]:
        await asyncio.sleep(0)
        return {**state, "cancelled": state.get("cancelled", 0) + 1}

    return projection


async def test_projection_folds_events_and_resumes() -> None:
    store = EventStore()
    await store.append("order.1", Event("order.placed", {"amount": 10}))
    await store.append("order.2", Event("order.placed", {"amount": 5}))
    await store.append("user.1", Event("user.created", {}))
    projection = totals(store)
    report = await projection.run()
    assert projection.state == {"orders": 2, "revenue": 15}
    assert (report.replayed, report.skipped) == (2, 1)
    assert projection.position == report.last_position
    await store.append("order.2", Event("order.cancelled", {}))
    again = await projection.run()
    assert again.replayed == 1
    assert projection.state == {"orders": 2, "revenue": 15, "cancelled": 1}


async def test_the_position_moves_past_events_no_handler_takes() -> None:
    store = EventStore()
    await store.append("order.1", Event("order.placed", {"amount": 10}))
    await store.append("user.1", [Event("user.created", {}), Event("user.renamed", {})])
    last = (await store.read_all())[-1].global_position
    checkpoints = MemoryCheckpointStore()
    projection = totals(store, state_store=checkpoints)
    report = await projection.run()
    assert (report.replayed, report.skipped) == (1, 2)
    assert projection.position == report.last_position == last  # saved with the state
    again = await projection.run()
    assert (again.replayed, again.skipped, again.last_position) == (0, 0, last)
    restarted = totals(store, state_store=checkpoints)
    await restarted.load()
    assert restarted.position == last
    assert (await restarted.run()).skipped == 0  # nothing is read again after a restart


async def test_the_report_says_how_long_the_run_took() -> None:
    store = EventStore()
    await store.append("order.1", [Event("order.placed", {"amount": n}) for n in range(3)])
    projection = Projection("slow", store)

    @projection.on("order.placed")
    async def slow(state: dict[str, Any], event: Event) -> None:
        await asyncio.sleep(0.05)

    # lower bounds only: three handlers of 50 ms, and a busy machine adds more
    assert (await projection.run()).duration >= 0.12
    assert (await projection.rebuild()).duration >= 0.12


@pytest.mark.parametrize(
    ("value", "named"),
    [
        ({1: 10}, "keys must be str"),  # reloads as {"1": 10}, then state.get(1) misses
        ({"last": datetime(2024, 1, 1, tzinfo=UTC)}, "datetime"),  # reloads as text
        ({"tags": {"a"}}, "set"),  # reloads as a list
        ({"pair": (1, 2)}, "tuple"),  # reloads as a list
        ({"n": [Decimal("1.5")]}, "Decimal"),  # reloads as text
        # these two named no projection: "cannot encode as JSON: ..." and "data contains
        # a reference cycle or is nested too deeply ..."
        ({"name": "x\udcff"}, "lone surrogate"),
        ({"deep": functools.reduce(lambda inner, _: [inner], range(300), 0)}, "too deeply"),
    ],
)
async def test_state_that_would_reload_as_other_types_is_refused_at_the_first_commit(
    value: dict[Any, Any], named: str
) -> None:
    # the state kept in memory must be what a reload gives: otherwise a projection works
    # in its first run and fails (or silently loses counts) after the next start
    store = EventStore()
    await store.append("order.1", Event("order.placed", {"amount": 10}))
    projection = Projection("odd", store, state_store=MemoryCheckpointStore())
    projection.on("order.placed")(lambda state, event: value)
    with pytest.raises(SerializationError, match=named) as caught:
        await projection.run()
    assert "projection 'odd' state" in str(caught.value)
    assert (projection.state, projection.position) == ({}, None)


async def test_a_second_instance_loads_the_committed_state() -> None:
    store = EventStore()
    checkpoints = MemoryCheckpointStore()
    await store.append("order.1", Event("order.placed", {"amount": 3}))
    await totals(store, state_store=checkpoints).run()
    other = totals(store, state_store=checkpoints)
    assert await other.load() == {"orders": 1, "revenue": 3}
    await store.append("order.1", Event("order.placed", {"amount": 4}))
    report = await other.run()
    assert report.replayed == 1 and other.state == {"orders": 2, "revenue": 7}


async def test_rebuild_starts_over() -> None:
    store = EventStore()
    await store.append("order.1", [Event("order.placed", {"amount": 1})] * 1)
    projection = totals(store)
    await projection.run()
    await projection.run()
    report = await projection.rebuild()
    assert report.replayed == 1 and projection.state == {"orders": 1, "revenue": 1}


async def test_initial_value_is_copied_and_filters_apply() -> None:
    store = EventStore()
    await store.append("order.1", Event("order.placed", {"amount": 1}))
    await store.append("shop.order.2", Event("order.placed", {"amount": 2}))
    initial: dict[str, Any] = {"orders": 0, "revenue": 0}
    projection = totals(store, initial=initial, streams="shop.#")
    await projection.run()
    assert projection.state == {"orders": 1, "revenue": 2}
    assert initial == {"orders": 0, "revenue": 0}


async def test_failing_handler_aborts_and_keeps_committed_state() -> None:
    store = EventStore()
    await store.append("order.1", [Event("order.placed", {"amount": i}) for i in range(10)])
    projection = Projection("p", store, initial=lambda: {"seen": []}, batch_size=4)
    fail_at = {6}

    @projection.on("order.placed")
    def record(state: dict[str, Any], event: Event) -> None:
        if event.data["amount"] in fail_at:
            raise RuntimeError("handler bug")
        state["seen"].append(event.data["amount"])

    with pytest.raises(ReplayError, match="handler bug") as caught:
        await projection.run()
    assert isinstance(caught.value.__cause__, RuntimeError)
    # the first batch (0..3) was committed; 4 and 5 were applied in memory only
    assert projection.state == {"seen": [0, 1, 2, 3]}
    fail_at.clear()
    await projection.run()
    assert projection.state == {"seen": list(range(10))}


async def test_two_runners_of_one_projection_conflict() -> None:
    store = EventStore()
    checkpoints = MemoryCheckpointStore()
    await store.append("order.1", Event("order.placed", {"amount": 1}))
    first = totals(store, state_store=checkpoints)
    second = totals(store, state_store=checkpoints)
    await first.load()
    await second.load()
    await first.run()
    await store.append("order.1", Event("order.placed", {"amount": 2}))
    with pytest.raises(ConcurrencyError):
        await second.run()  # applied 2 events in memory, then lost the compare-and-set
    # the loser takes the winner's committed state and position, not its half-applied one
    assert (second.state, second.position) == (first.state, first.position)
    assert second.state == {"orders": 1, "revenue": 1}
    await second.run()
    assert second.state == {"orders": 2, "revenue": 3}


class _FailingSaves(MemoryCheckpointStore):
    """Checkpoints in memory; the next ``fail`` saves raise, writing nothing."""

    fail = 0

    async def save(self, name: str, position: int, state: Any = None, **options: Any) -> None:
        if self.fail:
            self.fail -= 1
            raise StoreError("checkpoint store: database is locked")
        await super().save(name, position, state, **options)


@pytest.mark.parametrize("batch_size", [100, 2])  # the run's last commit; one mid-run
async def test_a_failed_commit_leaves_state_and_position_as_on_disk(batch_size: int) -> None:
    store = EventStore()
    await store.append("order.1", [Event("order.placed", {"amount": 1}) for _ in range(3)])
    checkpoints = _FailingSaves()
    projection = Projection(
        "count", store, initial=lambda: {"n": 0}, state_store=checkpoints, batch_size=batch_size
    )

    shared: list[bool] = []

    @projection.on("order.placed")
    def count(state: dict[str, Any], event: Event) -> None:
        shared.append(state is projection.state)
        state["n"] += 1  # in place, as handlers may

    checkpoints.fail = 1
    with pytest.raises(StoreError, match="locked"):
        await projection.run()
    assert (projection.state, projection.position) == ({"n": 0}, None)  # nothing was saved
    await projection.run()
    assert (projection.state, projection.position) == ({"n": 3}, 2)  # each event once
    assert not any(shared)  # handlers work on a copy: state shows committed values only
    saved = await checkpoints.load("projection:count")
    assert saved is not None and (saved.state, saved.position) == ({"n": 3}, 2)


async def test_overlapping_runs_of_one_projection_take_turns() -> None:
    store = EventStore()
    await store.append("order.1", [Event("order.placed", {"amount": 10}) for _ in range(3)])
    projection = Projection("revenue", store, initial=lambda: {"total": 0})

    @projection.on("order.placed")
    async def placed(state: dict[str, Any], event: Event) -> None:
        await asyncio.sleep(0.001)  # the other run would interleave here
        state["total"] += event.data["amount"]

    await projection.load()
    reports = await asyncio.gather(projection.run(), projection.run(), projection.rebuild())
    assert [report.replayed for report in reports] == [3, 0, 3]
    assert (projection.state, projection.position) == ({"total": 30}, 2)
    saved = await projection.state_store.load("projection:revenue")
    assert saved is not None and saved.state == {"total": 30}


async def test_a_run_during_follow_gets_its_turn_between_live_events() -> None:
    store = EventStore()
    await store.append("order.1", Event("order.placed", {"amount": 1}))
    projection = totals(store)
    task = asyncio.create_task(projection.follow())
    try:
        await eventually(lambda: projection.state.get("orders") == 1)
        await store.append("order.2", Event("order.placed", {"amount": 2}))
        async with asyncio.timeout(10):
            await projection.run()  # applies the new event, or finds follow did
        await store.append("order.3", Event("order.placed", {"amount": 4}))
        await eventually(lambda: projection.state.get("orders") == 3)
        assert projection.state == {"orders": 3, "revenue": 7}  # nothing applied twice
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    other = totals(store, state_store=projection.state_store)
    assert await other.load() == {"orders": 3, "revenue": 7}


async def test_follow_applies_live_appends() -> None:
    store = EventStore()
    await store.append("order.1", Event("order.placed", {"amount": 1}))
    projection = totals(store)
    task = asyncio.create_task(projection.follow())
    try:
        await eventually(lambda: projection.state.get("orders") == 1)
        await store.append("order.2", Event("order.placed", {"amount": 2}))
        await eventually(lambda: projection.state.get("orders") == 2)
        assert projection.state["revenue"] == 3
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    # what was applied live was committed
    other = totals(store, state_store=projection.state_store)
    assert await other.load() == {"orders": 2, "revenue": 3}


async def test_bad_projection_options() -> None:
    store = EventStore()
    with pytest.raises(ValueError):
        Projection("", store)
    with pytest.raises(ValueError):
        Projection("x", store, batch_size=0)
    with pytest.raises(ValueError):
        Projection("x", store).on("a..b", lambda s, e: None)


async def test_state_must_be_json() -> None:
    store = EventStore()
    await store.append("order.1", Event("order.placed", {"amount": 1}))
    projection = Projection("p", store)
    projection.on("#", lambda state, event: {"bad": object()})
    with pytest.raises(TypeError):
        await projection.run()


class _FlakyCheckpoints(MemoryCheckpointStore):
    """Checkpoints in memory whose loads fail while ``broken`` (a lost database, say)."""

    broken = False

    async def load(self, name: str) -> Any:
        if self.broken:
            raise StoreError("checkpoint store unreachable")
        return await super().load(name)


async def test_a_failed_run_reports_its_own_error_when_reloading_fails_too() -> None:
    store = EventStore()
    await store.append("order.1", [Event("order.placed", {"amount": i}) for i in range(10)])
    checkpoints = _FlakyCheckpoints()
    projection = Projection("p", store, state_store=checkpoints, batch_size=4)
    fail_at = {6}

    @projection.on("order.placed")
    def record(state: dict[str, Any], event: Event) -> None:
        if event.data["amount"] in fail_at:
            checkpoints.broken = True  # the reload after this failure fails as well
            raise RuntimeError("handler bug")
        state.setdefault("seen", []).append(event.data["amount"])

    with pytest.raises(ReplayError, match="handler bug") as caught:
        await projection.run()
    assert any("checkpoint store unreachable" in note for note in caught.value.__notes__)
    checkpoints.broken = False
    fail_at.clear()
    await projection.run()  # loads the committed state again first: 4 and 5 not twice
    assert projection.state == {"seen": list(range(10))}
