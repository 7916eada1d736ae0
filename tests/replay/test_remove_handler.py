"""Undoing registrations on replays and projections: EventReplay.remove_handler,
Projection.off and Projection.handlers."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

from pepperpy.event import Event, EventReplay, EventStore, PatternError, Projection, ReplayError
from tests.helpers import eventually


async def _store_with(*types: str) -> EventStore:
    store = EventStore()
    for n, kind in enumerate(types):
        await store.append(f"s.{n}", Event(kind, {"n": n}))
    return store


# -- EventReplay.remove_handler ------------------------------------------------------------


async def test_replay_remove_handler_removes_exactly_that_pattern_and_says_so() -> None:
    store = await _store_with("user.created", "user.renamed")
    replay = EventReplay(store)
    seen: list[tuple[str, int]] = []

    def record(event: Event) -> None:
        seen.append((event.type, event.data["n"]))

    replay.handle("user.*", record)
    replay.handle("user.#", record)
    assert replay.remove_handler("user.*", record) is True
    assert replay.remove_handler("user.*", record) is False  # none left under that pattern
    assert replay.remove_handler("order.*", record) is False  # never registered there
    assert replay.handlers("user.created") == [record]  # the user.# one stays
    await replay.replay_all()
    assert seen == [("user.created", 0), ("user.renamed", 1)]
    assert replay.remove_handler("user.#", record) is True
    assert replay.handlers("user.created") == []


async def test_replay_remove_handler_inside_a_handler_holds_from_the_next_event() -> None:
    store = await _store_with("tick", "tick", "tick")
    replay = EventReplay(store)
    seen: list[tuple[str, int]] = []

    async def first(event: Event) -> None:
        seen.append(("first", event.data["n"]))
        assert replay.remove_handler("tick", first) is True  # itself
        assert replay.remove_handler("tick", second) is True  # one still to run for this event

    def second(event: Event) -> None:
        seen.append(("second", event.data["n"]))

    replay.handle("tick", first)
    replay.handle("tick", second)
    report = await replay.replay_all()
    # the event being replayed keeps its handlers; the next ones reach neither
    assert seen == [("first", 0), ("second", 0)]
    assert (report.replayed, report.skipped, report.failed) == (1, 2, 0)


def test_replay_remove_handler_refuses_arguments_no_registration_can_have() -> None:
    replay = EventReplay(EventStore())

    def handler(event: Event) -> None:
        pass

    replay.handle("user.*", handler)
    with pytest.raises(TypeError, match=r"remove_handler\(\): pattern must be a str, got None"):
        replay.remove_handler(None, handler)  # type: ignore[arg-type]
    # the arguments the wrong way round: named, not a quiet False
    with pytest.raises(TypeError, match=r"remove_handler\(\): pattern must be a str"):
        replay.remove_handler(handler, "user.*")  # type: ignore[arg-type]
    with pytest.raises(
        TypeError, match=r"remove_handler\(\): the handler to remove must be callable, got 3"
    ):
        replay.remove_handler("user.*", 3)  # type: ignore[arg-type]
    with pytest.raises(PatternError):
        replay.remove_handler("user.", handler)
    assert replay.handlers("user.created") == [handler]


# -- Projection.off and handlers --------------------------------------------------------------


def _counting(store: EventStore) -> tuple[Projection, Any, Any]:
    projection = Projection("counts", store)

    def placed(state: dict[str, int], event: Event) -> None:
        state["placed"] = state.get("placed", 0) + 1

    def anything(state: dict[str, int], event: Event) -> None:
        state["all"] = state.get("all", 0) + 1

    projection.on("order.placed", placed)
    projection.on("#", anything)
    return projection, placed, anything


async def test_projection_off_keeps_the_committed_state_and_changes_later_events() -> None:
    store = await _store_with("order.placed", "order.placed")
    projection, placed, anything = _counting(store)
    assert projection.handlers("order.placed") == [placed, anything]
    assert projection.handlers("user.created") == [anything]
    assert projection.handlers("Order Placed") == []  # not a topic: such events are skipped
    await projection.run()
    assert projection.state == {"placed": 2, "all": 2}

    assert projection.off("order.placed", placed) is True
    assert projection.off("order.placed", placed) is False
    assert projection.off("order.placed", anything) is False  # registered under '#' only
    assert projection.handlers("order.placed") == [anything]
    await store.append("s.9", Event("order.placed", {"n": 9}))
    await projection.run()
    assert projection.state == {"placed": 2, "all": 3}  # what placed did stays

    await projection.rebuild()  # the whole log folded without it
    assert projection.state == {"all": 3}


async def test_projection_off_inside_a_handler_is_refused_and_nothing_changes() -> None:
    store = await _store_with("order.placed", "order.placed")
    projection = Projection("counts", store)
    refusals: list[str] = []

    @projection.on("order.placed")
    def placed(state: dict[str, int], event: Event) -> None:
        try:
            projection.off("order.placed", placed)
        except ReplayError as exc:
            refusals.append(str(exc))
            raise
        state["placed"] = state.get("placed", 0) + 1

    with pytest.raises(ReplayError, match="off\\(\\) refused while a run"):
        await projection.run()
    assert len(refusals) == 1 and "'counts'" in refusals[0]
    assert projection.handlers("order.placed") == [placed]  # still registered
    assert projection.position is None and projection.state == {}  # nothing committed
    assert projection.off("order.placed", placed) is True  # between runs it is allowed


async def test_projection_off_is_refused_while_following_and_allowed_once_stopped() -> None:
    store = await _store_with("order.placed")
    projection, placed, _ = _counting(store)
    follower = asyncio.create_task(projection.follow())
    try:
        await eventually(lambda: projection.position is not None)
        with pytest.raises(ReplayError, match="'counts': off\\(\\) refused"):
            projection.off("order.placed", placed)
        await store.append("s.5", Event("order.placed", {"n": 5}))
        await eventually(lambda: projection.state == {"placed": 2, "all": 2})
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower
    assert projection.off("order.placed", placed) is True


def test_projection_off_refuses_arguments_no_registration_can_have() -> None:
    projection, placed, _ = _counting(EventStore())
    with pytest.raises(TypeError, match=r"off\(\): pattern must be a str, got b'order.placed'"):
        projection.off(b"order.placed", placed)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"off\(\): pattern must be a str"):
        projection.off(placed, "order.placed")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"off\(\): the handler to remove must be callable"):
        projection.off("order.placed", {"placed": 1})  # type: ignore[arg-type]
    with pytest.raises(PatternError):
        projection.off("order placed", placed)
    assert projection.handlers("order.placed")[0] is placed
