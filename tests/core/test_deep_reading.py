"""JSON read back (a stored row, a message from another program) is held to the depth an
event may have, with a clear error, at any depth of the caller's stack.

orjson reads documents up to 1,024 levels deep; nothing this library writes is deeper
than ``MAX_DEPTH`` levels of data, or of metadata. Deeper data read back used to be
accepted (a copy past the limit, where ``Event()`` refuses it), and deeper metadata too.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import orjson
import pytest

from pepperpy.event import Event, SerializationError
from pepperpy.event._frozen import MAX_DEPTH, FrozenDict, FrozenList, freeze_parsed
from tests.core.test_freeze_depth import nested, outcome, spine, with_frames_left

TOO_DEEP = (
    f"data is nested more than {MAX_DEPTH} levels of lists and objects deep, "
    "deeper than an event's data may be"
)


def parsed(depth: int, shape: str) -> Any:
    """What orjson reads from JSON nested ``depth`` levels deep."""
    return orjson.loads(orjson.dumps(nested(depth, shape)))


def parsed_deep(depth: int, shape: str) -> Any:
    """As :func:`parsed`, for depths orjson cannot write (it writes at most 254)."""
    opening, closing = ("[", "]") if shape == "list" else ('{"a":', "}")
    return orjson.loads(opening * depth + "0" + closing * depth)


@pytest.mark.parametrize("spare", [None, 60, 10])
@pytest.mark.parametrize("shape", ["dict", "list", "mixed"])
def test_parsed_data_as_deep_as_an_event_holds_is_kept_at_any_depth(
    shape: str, spare: int | None
) -> None:
    value = parsed(MAX_DEPTH, shape)
    call = functools.partial(freeze_parsed, value)
    got = outcome(call) if spare is None else with_frames_left(spare, call)
    assert got[0] == "ok", got
    assert got[1] == value
    kinds = {type(container) for container in spine(got[1])}
    assert kinds <= {FrozenDict, FrozenList} and len(list(spine(got[1]))) == MAX_DEPTH


@pytest.mark.parametrize("spare", [None, 60, 10])
@pytest.mark.parametrize(
    ("depth", "shape"),
    [
        (MAX_DEPTH + 1, "dict"),
        (MAX_DEPTH + 1, "list"),
        (MAX_DEPTH + 1, "mixed"),
        (1_000, "dict"),
        (1_024, "list"),
    ],
)
def test_parsed_data_deeper_than_an_event_holds_is_refused_alike_at_any_depth(
    depth: int, shape: str, spare: int | None
) -> None:
    value = parsed(depth, shape) if depth <= 254 else parsed_deep(depth, shape)
    call = functools.partial(freeze_parsed, value)
    got = outcome(call) if spare is None else with_frames_left(spare, call)
    assert got == ("error", SerializationError, TOO_DEEP)


def cloudevent(**extra: Any) -> dict[str, Any]:
    return {"specversion": "1.0", "id": "x-1", "source": "urn:other", "type": "a.b", **extra}


@pytest.mark.parametrize("spare", [None, 60])
@pytest.mark.parametrize(
    "document",
    [
        cloudevent(deep=nested(MAX_DEPTH, "list")),  # the metadata dict is one more level
        cloudevent(pepperpymetadata=orjson.dumps({"deep": nested(MAX_DEPTH, "dict")}).decode()),
        cloudevent(ok=1, deep={"a": nested(MAX_DEPTH - 1, "mixed")}),
    ],
    ids=["extension", "packed", "beside-others"],
)
def test_a_message_with_metadata_deeper_than_an_event_holds_is_refused(
    document: dict[str, Any], spare: int | None
) -> None:
    raw = orjson.dumps(document)
    for call in (functools.partial(Event.from_json, raw), lambda: Event.from_cloudevent(document)):
        got = outcome(call) if spare is None else with_frames_left(spare, call)
        assert got == (
            "error",
            SerializationError,
            f"metadata is nested more than {MAX_DEPTH} levels of lists and objects deep, "
            "deeper than an event's metadata may be",
        )


def test_a_message_with_metadata_as_deep_as_an_event_holds_is_read() -> None:
    event = Event("a.b", None, {"deep": nested(MAX_DEPTH - 1, "list"), "n": 1})
    read = Event.from_json(event.to_json())
    assert read.metadata == event.metadata
    document = cloudevent(deep=nested(MAX_DEPTH - 1, "list"))
    assert Event.from_cloudevent(document).metadata["deep"] == document["deep"]


@pytest.mark.parametrize("spare", [None, 60])
def test_a_message_with_data_deeper_than_an_event_holds_is_refused(spare: int | None) -> None:
    document = cloudevent(data=nested(MAX_DEPTH + 1, "dict"))
    raw = json.dumps(document)  # orjson writes at most 254 levels
    call = functools.partial(Event.from_json, raw)
    got = outcome(call) if spare is None else with_frames_left(spare, call)
    assert got == ("error", SerializationError, TOO_DEEP)
    # a mapping from Python gets every check of Event(), and its message
    call = functools.partial(Event.from_cloudevent, document)
    got = outcome(call) if spare is None else with_frames_left(spare, call)
    assert got[:2] == ("error", SerializationError)
    assert got[2].startswith("at data['a']")
    assert got[2].endswith("nested too deeply for JSON (at most 253 levels of lists and objects)")


def test_data_read_from_json_is_frozen_as_event_makes_it() -> None:
    data = {"a": [1, {"b": None, "c": [0.5, "x", True]}], "n": 2**64 - 1, "e": {}}
    read = Event.from_json(Event("a.b", data).to_json())
    assert read.data == Event("a.b", data).data == data
    assert type(read.data["a"]) is FrozenList and type(read.data["a"][1]) is FrozenDict
    with pytest.raises(TypeError):
        read.data["a"][1]["c"].append(1)


@pytest.mark.parametrize("depth", [1_025, 10_000, 100_000])
def test_a_message_deeper_than_json_is_read_is_refused_by_the_parser(depth: int) -> None:
    raw = b'{"specversion":"1.0","data":' + b"[" * depth + b"]" * depth + b"}"
    got = outcome(lambda: with_frames_left(60, functools.partial(Event.from_json, raw)))
    assert got[0] == "ok"
    assert got[1][:2] == ("error", SerializationError)
    assert got[1][2].startswith("invalid JSON: ")
