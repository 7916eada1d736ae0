"""Data too deep to freeze, or holding a cycle: one clear error from every entry point."""

from __future__ import annotations

import functools
from typing import Any

import pytest

from pepperpy.event import Event, SerializationError
from pepperpy.event._frozen import MAX_DEPTH, check_json, freeze

TOO_DEEP = "reference cycle or is nested too deeply"


def nested(depth: int, container: str) -> Any:
    wrap = (lambda inner: {"a": inner}) if container == "dict" else (lambda inner: [inner])
    return functools.reduce(lambda inner, _: wrap(inner), range(depth), 0)


def cyclic() -> dict[str, Any]:
    data: dict[str, Any] = {"name": "loop"}
    data["self"] = data
    return data


DATA = [nested(5_000, "dict"), nested(5_000, "list"), cyclic()]
IDS = ["deep-dict", "deep-list", "cycle"]


@pytest.mark.parametrize("data", DATA, ids=IDS)
@pytest.mark.parametrize(
    "entry",
    [freeze, check_json, lambda data: Event("t.x", data)],
    ids=["freeze", "check_json", "Event"],
)
def test_every_entry_point_refuses_it_with_a_serialization_error(entry: Any, data: Any) -> None:
    with pytest.raises(SerializationError, match=TOO_DEEP):
        entry(data)


def test_an_event_read_from_json_too_deep_to_freeze_is_refused_clearly() -> None:
    # orjson parses up to 1024 levels; freezing that many runs past the recursion limit
    depth = 1_000
    data = b'{"a":' * depth + b"0" + b"}" * depth
    cloudevent = (
        b'{"specversion":"1.0","id":"x-1","source":"s","type":"t.x",'
        b'"datacontenttype":"application/json","data":' + data + b"}"
    )
    with pytest.raises(SerializationError, match=f"nested more than {MAX_DEPTH} levels"):
        Event.from_json(cloudevent)


@pytest.mark.parametrize("container", ["dict", "list"])
def test_data_as_deep_as_json_carries_is_kept_and_deeper_is_refused(container: str) -> None:
    # orjson writes at most 254 nested levels and the CloudEvents envelope takes one: data
    # nested 253 deep travels; 254 deep used to be accepted by Event() and then failed
    # wherever it was published or stored
    deepest = Event("a.b", nested(MAX_DEPTH, container))
    assert Event.from_json(deepest.to_json()).data == nested(MAX_DEPTH, container)
    assert freeze(nested(MAX_DEPTH, container)) == nested(MAX_DEPTH, container)
    with pytest.raises(SerializationError, match=f"at most {MAX_DEPTH} levels"):
        Event("a.b", nested(MAX_DEPTH + 1, container))
    with pytest.raises(SerializationError, match=TOO_DEEP):
        check_json(nested(MAX_DEPTH + 1, container))
