"""Projection.on is refused while a run, rebuild or follow is under way, as off is: a
handler added mid-run would leave a state that depends on when it was added (the events
before it applied without it)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

from pepperpy.event import Event, EventStore, Projection, ReplayError

REFUSED = r"'counts': on\(\) refused while a run, rebuild or follow is under way"


async def _store_with(*types: str) -> EventStore:
    store = EventStore()
    for n, kind in enumerate(types):
        await store.append(f"s.{n}", Event(kind, {"n": n}))
    return store


def _late(state: dict[str, int], event: Event) -> None:
    state["late"] = state.get("late", 0) + 1


async def test_on_inside_a_handler_is_refused_in_both_forms_and_nothing_changes() -> None:
    store = await _store_with("order.placed", "order.placed")
    projection = Projection("counts", store)
    refusals: list[str] = []

    @projection.on("order.placed")
    def placed(state: dict[str, int], event: Event) -> None:
        with pytest.raises(ReplayError) as direct:
            projection.on("order.placed", _late)
        refusals.append(str(direct.value))
        decorate = projection.on("order.#")  # the decorator refuses when it is applied
        with pytest.raises(ReplayError) as decorated:
            decorate(_late)
        refusals.append(str(decorated.value))
        state["placed"] = state.get("placed", 0) + 1

    await projection.run()
    assert len(refusals) == 4  # two events, both forms refused each time
    for message in refusals:
        assert message.startswith("projection 'counts': on() refused while a run")
        assert "register handlers before running" in message  # what to do instead
    assert projection.handlers("order.placed") == [placed]  # nothing was added
    assert projection.state == {"placed": 2}

    # between runs it is allowed; rebuild() folds the whole log with the late handler
    assert projection.on("order.placed", _late) is _late
    await projection.rebuild()
    assert projection.state == {"placed": 2, "late": 2}


async def test_on_is_refused_while_a_run_is_under_way_and_allowed_after() -> None:
    store = await _store_with("order.placed")
    projection = Projection("counts", store)
    entered, release = asyncio.Event(), asyncio.Event()

    @projection.on("order.placed")
    async def placed(state: dict[str, int], event: Event) -> None:
        entered.set()
        await release.wait()
        state["placed"] = state.get("placed", 0) + 1

    running = asyncio.create_task(projection.run())
    try:
        await entered.wait()
        with pytest.raises(ReplayError, match=REFUSED):
            projection.on("order.placed", _late)
        with pytest.raises(ReplayError, match=REFUSED):
            projection.on("order.placed")(_late)
        release.set()
        await running
    finally:
        release.set()
        await asyncio.gather(running, return_exceptions=True)
    assert projection.state == {"placed": 1}
    assert projection.handlers("order.placed") == [placed]
    projection.on("order.placed")(_late)
    assert projection.handlers("order.placed") == [placed, _late]


async def test_on_is_refused_while_following_and_allowed_once_stopped() -> None:
    store = await _store_with("order.placed")
    projection = Projection("counts", store)
    applied: asyncio.Queue[int] = asyncio.Queue()

    @projection.on("order.placed")
    def placed(state: dict[str, Any], event: Event) -> None:
        state["placed"] = state.get("placed", 0) + 1
        applied.put_nowait(event.data["n"])

    follower = asyncio.create_task(projection.follow())
    try:
        assert await applied.get() == 0
        with pytest.raises(ReplayError, match=REFUSED):
            projection.on("order.placed", _late)
        with pytest.raises(ReplayError, match=REFUSED):
            projection.on("order.#")(_late)
        await store.append("s.5", Event("order.placed", {"n": 5}))
        assert await applied.get() == 5  # applied without the refused handler
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower
    assert projection.state == {"placed": 2}
    assert projection.on("order.placed", _late) is _late


async def test_arguments_are_checked_before_the_refusal() -> None:
    store = await _store_with("order.placed")
    projection = Projection("counts", store)
    errors: list[BaseException] = []

    @projection.on("order.placed")
    def placed(state: dict[str, int], event: Event) -> None:
        try:
            projection.on("order placed", _late)
        except Exception as exc:
            errors.append(exc)
        try:
            projection.on("order.placed", 3)  # type: ignore[call-overload]
        except Exception as exc:
            errors.append(exc)

    await projection.run()
    assert [type(error).__name__ for error in errors] == ["PatternError", "TypeError"]
