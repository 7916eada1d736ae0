"""Event types, topics and patterns given as ``StrEnum`` members (or any str subclass).

``on(Types.CREATED)`` and ``bus.subscribe(Types.CREATED, ...)`` took a member, but
``emit(Types.CREATED)``, ``Event(Types.CREATED)`` and ``bus.publish(Types.CREATED)``
refused it ("emit() takes an event type (str) or an Event"), though the member is a
str. Every entry point now takes one and keeps the plain str it holds, so the type an
event carries, a registered pattern and a topic are strs whatever was passed: a
``(str, Enum)`` member prints as ``Types.CREATED`` on CPython 3.12+, which would
otherwise reach logs, stores and brokers.
"""

from __future__ import annotations

import asyncio
from enum import Enum, StrEnum
from typing import Any

import pytest

from pepperpy.event import Event, EventBus, EventManager, EventStore
from pepperpy.event import _event as event_module


class Types(StrEnum):
    CREATED = "user.created"
    DELETED = "user.deleted"
    ANY = "user.*"


class OldStyle(str, Enum):  # noqa: UP042 - the pre-StrEnum idiom, still common
    CREATED = "user.created"
    ANY = "user.*"


class Named(str):
    def __str__(self) -> str:
        return "not the type"


MEMBERS: list[Any] = [Types.CREATED, OldStyle.CREATED, Named("user.created")]
PATTERNS: list[Any] = [Types.ANY, OldStyle.ANY, Named("user.*")]


@pytest.mark.parametrize("kind", MEMBERS, ids=["StrEnum", "str-Enum", "str-subclass"])
async def test_emit_takes_a_str_subclass_and_events_carry_the_plain_str(kind: Any) -> None:
    manager = EventManager()
    seen: list[Event] = []
    manager.on(PATTERNS[MEMBERS.index(kind)], seen.append)
    emitted = await manager.emit(kind, {"id": 1})
    scheduled = await manager.emit_nowait(kind, {"id": 2})
    assert seen == [emitted, scheduled]
    for event in seen:
        assert event.type == "user.created" and type(event.type) is str
    assert manager.patterns() == ["user.*"] and type(manager.patterns()[0]) is str
    assert await manager.off(PATTERNS[MEMBERS.index(kind)], seen.append) is True


@pytest.mark.parametrize("kind", MEMBERS, ids=["StrEnum", "str-Enum", "str-subclass"])
def test_event_and_replace_take_a_str_subclass(kind: Any) -> None:
    event = Event(kind, {"id": 1})
    assert event.type == "user.created" and type(event.type) is str
    changed = Event("x").replace(type=kind)
    assert changed.type == "user.created" and type(changed.type) is str
    assert "Types." not in repr(event) and "not the type" not in event.to_json().decode()


@pytest.mark.parametrize(
    "make",
    [event_module._make_event_py, event_module._c_make_event()],
    ids=["python", "c"],
)
def test_make_event_takes_a_str_subclass_in_both_versions(make: Any) -> None:
    if make is None:
        pytest.skip("the _cevent extension is not built")
    for kind in MEMBERS:
        event = make(kind, {"id": 1}, None)
        assert event.type == "user.created" and type(event.type) is str
    for bad in ("", None, 3, b"user.created", Named("")):
        with pytest.raises(TypeError, match="event type must be a non-empty str"):
            make(bad, None, None)


async def test_a_once_handler_registered_by_member_runs_once() -> None:
    manager = EventManager()
    seen: list[str] = []
    manager.once(Types.CREATED, lambda event: seen.append(event.type))
    await manager.emit(Types.CREATED)
    await manager.emit("user.created")
    assert seen == ["user.created"]


async def test_the_bus_takes_members_for_patterns_and_topics() -> None:
    async with EventBus() as bus:
        got: list[Event] = []
        done = asyncio.Event()

        async def handler(event: Event) -> None:
            got.append(event)
            if len(got) == 3:
                done.set()

        bus.subscribe(OldStyle.ANY, handler, group="g")
        await bus.publish(OldStyle.CREATED, {"n": 1})
        await bus.publish_many(Types.DELETED, [{"n": 2}, {"n": 3}])
        await asyncio.wait_for(done.wait(), 10)
        await bus.delete_group(Types.ANY, "other")  # a member names the pattern there too
    assert [(e.type, e.data["n"]) for e in got] == [
        ("user.created", 1),
        ("user.deleted", 2),
        ("user.deleted", 3),
    ]
    assert all(type(e.type) is str for e in got)


async def test_a_stored_event_of_a_member_type_reads_back_as_that_str() -> None:
    async with EventStore() as store:
        await store.append("user-1", Event(OldStyle.CREATED, {"id": 1}))
        [event] = await store.get_stream("user-1")
    assert event.type == "user.created" and type(event.type) is str
