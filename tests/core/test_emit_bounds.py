"""Data is checked at emit time on the hot paths too (SPEC 1): integers JSON cannot carry.

``EventManager.emit``/``emit_nowait`` and ``EventBus.publish`` build events from a type
and a flat dict through a fast path of their own; what it accepts or refuses must be
exactly what ``Event(...)`` accepts or refuses, so a bad value fails where it is emitted,
not later when the event is written as JSON.
"""

from __future__ import annotations

from typing import Any

import pytest

from pepperpy.event import Event, EventBus, EventManager, SerializationError
from tests.helpers import eventually

#: (value, accepted): 64-bit JSON integers run from -2**63 (signed) to 2**64 - 1 (unsigned)
BOUNDS = [
    (2**63 - 1, True),
    (-(2**63), True),
    (2**64 - 1, True),
    (2**64, False),
    (-(2**63) - 1, False),
    (10**30, False),
]


@pytest.mark.parametrize(("value", "accepted"), BOUNDS)
def test_event_draws_the_line_the_hot_paths_must_follow(value: int, accepted: bool) -> None:
    if accepted:
        assert Event("t.x", {"n": value}).to_json()
    else:
        with pytest.raises(SerializationError, match="64 bits"):
            Event("t.x", {"n": value})


@pytest.mark.parametrize(("value", "accepted"), BOUNDS)
@pytest.mark.parametrize(
    "data",
    [lambda n: {"n": n}, lambda n: {"a": "x", "n": n, "b": 1.5}],
    ids=["alone", "among-atoms"],
)
async def test_emit_accepts_or_refuses_an_int_as_event_does(
    value: int, accepted: bool, data: Any
) -> None:
    manager = EventManager()
    got: list[Event] = []
    manager.on("t.x", got.append)
    if accepted:
        await manager.emit("t.x", data(value))
        assert got[0].data["n"] == value
        assert Event.from_json(got[0].to_json()).data["n"] == value
    else:
        with pytest.raises(SerializationError, match="64 bits"):
            await manager.emit("t.x", data(value))
        assert got == []  # refused before any handler saw it


@pytest.mark.parametrize(("value", "accepted"), BOUNDS)
async def test_emit_nowait_accepts_or_refuses_an_int_as_event_does(
    value: int, accepted: bool
) -> None:
    async with EventManager() as manager:
        got: list[Event] = []
        manager.on("t.x", got.append)
        if accepted:
            await manager.emit_nowait("t.x", {"n": value})
            assert got[0].data["n"] == value
        else:
            with pytest.raises(SerializationError, match="64 bits"):
                manager.emit_nowait("t.x", {"n": value})  # raised at the call, not later
            await manager.drain()
            assert got == []


@pytest.mark.parametrize(("value", "accepted"), BOUNDS)
async def test_publish_accepts_or_refuses_an_int_as_event_does(value: int, accepted: bool) -> None:
    async with EventBus() as bus:
        got: list[Any] = []
        bus.subscribe("t.x")(lambda event: got.append(event.data["n"]))
        if accepted:
            await bus.publish("t.x", {"n": value})
        else:
            with pytest.raises(SerializationError, match="64 bits"):
                await bus.publish("t.x", {"n": value})
        await bus.publish("t.x", {"n": "end"})
        await eventually(lambda: "end" in got)
        assert got == ([value, "end"] if accepted else ["end"])
