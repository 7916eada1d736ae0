"""An event's metadata shares no nested dict or list with the mapping it was built from.

Metadata is the part handlers and middleware change. The constructor (``Event()`` and
``emit``, in C and in Python) copied it shallowly: nested dicts and lists were the
caller's, so a handler's ``event.metadata["tags"].append(...)`` changed the caller's dict
and every later event built from it (one dict of defaults passed to every ``emit``),
which then also grew without end. ``replace()`` and ``to_dict()`` already copied deeply.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pepperpy.event import Event, EventManager
from pepperpy.event._frozen import freeze


def test_a_handler_changing_nested_metadata_changes_no_other_event() -> None:
    defaults: dict[str, Any] = {"service": "shop", "tags": [], "trace": {"hops": 0}}
    manager = EventManager()

    @manager.on("order.*")
    def enrich(event: Event) -> None:
        event.metadata["tags"].append(event.type)
        event.metadata["trace"]["hops"] += 1

    async def main() -> list[Event]:
        return [await manager.emit(f"order.{n}", None, defaults) for n in ("a", "b", "c")]

    events = asyncio.run(main())
    assert defaults == {"service": "shop", "tags": [], "trace": {"hops": 0}}
    assert [event.metadata["tags"] for event in events] == [["order.a"], ["order.b"], ["order.c"]]
    assert [event.metadata["trace"]["hops"] for event in events] == [1, 1, 1]


@pytest.mark.parametrize("build", [Event, EventManager._ready_event], ids=["Event", "emit"])
def test_the_callers_nested_containers_are_copied(build: Any) -> None:
    nested = {"a": [1, {"b": [2]}]}
    event = build("order.placed", None, {"n": nested, "flat": 1})
    assert event.metadata == {"n": {"a": [1, {"b": [2]}]}, "flat": 1}
    assert event.metadata["n"] is not nested
    assert event.metadata["n"]["a"] is not nested["a"]
    nested["a"][1]["b"].append(3)
    assert event.metadata["n"] == {"a": [1, {"b": [2]}]}


def test_read_only_values_and_cyclic_metadata_are_kept_as_before() -> None:
    shared = freeze({"read": "only"})
    assert Event("order.placed", None, {"data": shared}).metadata["data"] is shared
    loop: list[Any] = []
    loop.append(loop)
    event = Event("order.placed", None, {"loop": loop})  # refused only when copied/written
    assert event.metadata["loop"] is loop
