"""Freezing event data, and serializing it, answer the same at any depth of the caller's stack.

Data nested up to ``MAX_DEPTH`` lists and objects is kept and deeper data refused with one
message, whether ``Event()`` is built at the top of a program, by a handler deep in
recursion, or under a lowered recursion limit: the walks keep their own stacks. Outcomes
are taken at the caller's depth and compared at the test's own, so a ``RecursionError``
or a misreported "too deep" shows up as a different outcome.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import sys
from collections.abc import Callable, Iterator
from typing import Any

import msgspec
import orjson
import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pepperpy.event import Event, SerializationError, _json
from pepperpy.event._event import json_native
from pepperpy.event._frozen import (
    MAX_DEPTH,
    FrozenDict,
    FrozenList,
    check_json,
    freeze,
    freeze_parsed,
    thaw,
    too_deep,
)

TOO_DEEP = str(too_deep())
#: frames left to the callers below: ~60 as a handler deep in recursion, 10 as few as may be
SPARE = [60, 10]
SHAPES = ["dict", "list", "tuple", "mixed"]

Outcome = tuple[Any, ...]


def frames_left() -> int:
    """How many more nested calls the recursion limit allows the caller: measured, as it
    counts calls through C code too, which ``sys._getframe()`` does not show."""

    def probe(taken: int) -> int:
        try:
            return probe(taken + 1)
        except RecursionError:
            return taken

    return probe(0)


def outcome(call: Callable[[], Any]) -> Outcome:
    """What ``call()`` gave: ``("ok", value)`` or ``("error", type, message)``."""
    try:
        return ("ok", call())
    except Exception as exc:  # RecursionError included: it must show as an outcome
        return ("error", type(exc), str(exc))


def with_frames_left(spare: int, call: Callable[[], Any]) -> Outcome:
    """The outcome of ``call()`` made with only ``spare`` frames left below the limit."""

    def down(levels: int) -> Outcome:
        if levels <= 0:
            return outcome(call)
        return down(levels - 1)

    levels = frames_left() - spare
    assert levels > 0
    return down(levels)


def nested(depth: int, shape: str, inner: Any = 0) -> Any:
    """``inner`` in ``depth`` lists and objects (``mixed``: objects, lists and tuples by turns,
    each with a sibling)."""

    def wrap(value: Any, level: int) -> Any:
        kind = shape if shape != "mixed" else ("dict", "list", "tuple")[level % 3]
        if kind == "dict":
            return {"a": value} if shape != "mixed" else {"n": level, "a": value}
        if kind == "list":
            return [value] if shape != "mixed" else [level, value]
        return (value,) if shape != "mixed" else (value, "x")

    return functools.reduce(wrap, range(depth), inner)


def spine(value: Any) -> Iterator[Any]:
    """The nested containers of :func:`nested`'s output, outermost first."""
    while isinstance(value, dict | list | tuple):
        yield value
        value = (
            value["a"]
            if isinstance(value, dict)
            else next((item for item in value if isinstance(item, dict | list | tuple)), None)
        )


def plain(value: Any) -> Any:
    """What freeze() makes of ordinary data, as plain containers (tuples become lists)."""
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    return value


def cyclic_dict() -> dict[str, Any]:
    data: dict[str, Any] = {"name": "loop"}
    data["self"] = data
    return data


def cyclic_list() -> list[Any]:
    data: list[Any] = [0]
    data.append({"x": data})
    return data


@pytest.mark.parametrize("spare", SPARE)
@pytest.mark.parametrize("shape", SHAPES)
def test_data_as_deep_as_an_event_holds_is_kept_by_a_deep_caller(shape: str, spare: int) -> None:
    data = nested(MAX_DEPTH, shape)
    got = with_frames_left(spare, lambda: Event("a.b", data))
    assert got[0] == "ok", got
    frozen = got[1].data
    assert frozen == plain(data)
    kinds = [type(container) for container in spine(frozen)]
    assert len(kinds) == MAX_DEPTH
    assert set(kinds) <= {FrozenDict, FrozenList}
    assert outcome(lambda: freeze(data))[1] == frozen


@pytest.mark.parametrize("spare", SPARE)
@pytest.mark.parametrize("shape", SHAPES)
def test_one_level_more_is_refused_with_the_same_message_at_any_depth(
    shape: str, spare: int
) -> None:
    data = nested(MAX_DEPTH + 1, shape)
    at_top = outcome(lambda: Event("a.b", data))
    assert at_top[:2] == ("error", SerializationError)
    assert at_top[2].startswith("at data[") and at_top[2].endswith(TOO_DEEP)
    assert with_frames_left(spare, lambda: Event("a.b", data)) == at_top
    assert with_frames_left(spare, lambda: check_json(data)) == at_top


@pytest.mark.parametrize("shape", SHAPES)
def test_a_lowered_recursion_limit_changes_nothing(shape: str) -> None:
    deepest, deeper = nested(MAX_DEPTH, shape), nested(MAX_DEPTH + 1, shape)
    before = sys.getrecursionlimit()
    sys.setrecursionlimit(before - frames_left() + 80)  # far fewer frames than MAX_DEPTH
    try:
        kept = outcome(lambda: Event("a.b", deepest))
        refused = outcome(lambda: Event("a.b", deeper))
        cycle = outcome(lambda: freeze(cyclic_dict()))
    finally:
        sys.setrecursionlimit(before)
    assert kept[0] == "ok", kept
    assert kept[1].data == plain(deepest)
    assert refused == outcome(lambda: Event("a.b", deeper))
    assert refused[:2] == ("error", SerializationError)
    assert refused[2].endswith(TOO_DEEP)
    assert cycle == (
        "error",
        SerializationError,
        "at data" + "['self']" * MAX_DEPTH + ": " + TOO_DEEP,
    )


@pytest.mark.parametrize("spare", SPARE)
@pytest.mark.parametrize("make", [cyclic_dict, cyclic_list], ids=["dict", "list-dict"])
def test_a_cycle_is_refused_alike_at_any_depth(make: Callable[[], Any], spare: int) -> None:
    data = make()
    at_top = outcome(lambda: freeze(data))
    assert at_top[:2] == ("error", SerializationError)
    assert at_top[2].startswith("at data[") and at_top[2].endswith(TOO_DEEP)
    assert with_frames_left(spare, lambda: freeze(data)) == at_top
    assert with_frames_left(spare, lambda: Event("a.b", data)) == at_top
    if make is cyclic_dict:
        assert at_top[2] == "at data" + "['self']" * MAX_DEPTH + ": " + TOO_DEEP


#: bad data and the message freeze() has always given for it
BAD = [
    (
        {"sensors": [{"celsius": 21.5}, {"celsius": math.nan}]},
        "at data['sensors'][1]['celsius']: nan is not a finite number; JSON cannot hold it",
    ),
    ({"a": {1: "x"}}, "at data['a']: object keys must be strings, got int key 1"),
    ([1, (2, {3, 4})], "at data[1][1]: value of type set is not JSON-serialisable"),
    (
        {"n": 2**64},
        "at data['n']: integer 18446744073709551616 does not fit in 64 bits; "
        "JSON encoders cannot carry it",
    ),
    (
        {"a": [{"b": ({"c": -math.inf},)}]},
        "at data['a'][0]['b'][0]['c']: -inf is not a finite number; JSON cannot hold it",
    ),
]


@pytest.mark.parametrize("spare", [None, *SPARE])
@pytest.mark.parametrize(
    ("data", "message"), BAD, ids=["nan", "int-key", "set", "wide-int", "inf-in-tuple"]
)
def test_bad_data_is_named_as_before_at_any_depth(
    data: Any, message: str, spare: int | None
) -> None:
    call = functools.partial(freeze, data)
    got = outcome(call) if spare is None else with_frames_left(spare, call)
    assert got == ("error", SerializationError, message)


@pytest.mark.parametrize("spare", SPARE)
def test_bad_data_at_the_bottom_of_deep_data_is_named_by_its_path(spare: int) -> None:
    data = nested(MAX_DEPTH - 1, "mixed", inner={"ok": 1, "bad": {1, 2}})
    at_top = outcome(lambda: freeze(data))
    assert at_top[:2] == ("error", SerializationError)
    assert at_top[2].endswith("['bad']: value of type set is not JSON-serialisable")
    assert at_top[2].count("[") == MAX_DEPTH
    assert with_frames_left(spare, lambda: freeze(data)) == at_top


_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=4),
)
_ordinary = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=3).map(tuple),
        st.dictionaries(st.text(max_size=4), inner, max_size=4),
    ),
    max_leaves=30,
)
_any = st.recursive(
    st.one_of(
        _scalars,
        st.integers(),
        st.floats(),
        st.sampled_from([{1, 2}, frozenset(), b"x", object()]),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=3).map(tuple),
        st.dictionaries(st.one_of(st.text(max_size=3), st.integers(0, 3)), inner, max_size=4),
    ),
    max_leaves=30,
)


@settings(max_examples=200, deadline=None)
@given(_ordinary)
def test_ordinary_data_freezes_to_read_only_copies_as_before(data: Any) -> None:
    frozen = freeze(data)
    assert frozen == plain(data)
    assert thaw(frozen) == plain(data)
    assert freeze_parsed(orjson.loads(orjson.dumps(data))) == frozen
    if isinstance(data, dict | list | tuple):
        assert type(frozen) in (FrozenDict, FrozenList)
        assert type(thaw(frozen)) in (dict, list)
    assert with_frames_left(10, lambda: freeze(data)) == ("ok", frozen)


@settings(max_examples=300, deadline=None)
@given(_any)
def test_any_data_gets_the_same_answer_at_any_depth(data: Any) -> None:
    at_top = outcome(lambda: freeze(data))
    assert with_frames_left(10, lambda: freeze(data)) == at_top


@dataclasses.dataclass
class Link:
    next: Any
    tags: tuple[str, ...] = ("x",)


class Point(msgspec.Struct):
    x: int
    y: list[float]


class Model(pydantic.BaseModel):
    name: str
    point: dict[str, Any]


@pytest.mark.parametrize("spare", [None, *SPARE])
def test_dataclasses_models_and_structs_nested_deep_freeze_alike(spare: int | None) -> None:
    leaf = [Point(1, [0.5]), Model(name="m", point={"p": [1]})]
    # each Link is an object (a level) holding the next; the leaf list and the model in it
    # take four more
    data = functools.reduce(lambda inner, _: Link(inner), range(MAX_DEPTH - 4), leaf)
    expected = functools.reduce(
        lambda inner, _: {"next": inner, "tags": ["x"]},
        range(MAX_DEPTH - 4),
        [{"x": 1, "y": [0.5]}, {"name": "m", "point": {"p": [1]}}],
    )
    call = functools.partial(freeze, data)
    got = outcome(call) if spare is None else with_frames_left(spare, call)
    assert got[0] == "ok", got
    assert got[1] == expected
    too_deep_data = [data]
    call = functools.partial(freeze, too_deep_data)
    got = outcome(call) if spare is None else with_frames_left(spare, call)
    assert got[:2] == ("error", SerializationError)
    assert got[2].endswith(TOO_DEEP)


def _deep_event() -> Event:
    # an integer of 64 bits and a 25-digit run in text: JSON read back is scanned for
    # integers beyond 64 bits; a None makes the encoder look for NaN
    inner = {"max": 2**64 - 1, "digits": "1" * 25, "none": None, "real": 0.5}
    return Event("a.b", nested(MAX_DEPTH - 1, "mixed", inner), {"trace": [{"id": 1}]})


SERIALIZERS: dict[str, Callable[[Event], Any]] = {
    "to_json": lambda event: event.to_json(),
    "from_json": lambda event: Event.from_json(event.to_json()).data,
    "to_dict": lambda event: event.to_dict(),
    "to_cloudevent": lambda event: event.to_cloudevent(),
    "reduce": lambda event: event.__reduce__()[1][1],
    "replace": lambda event: event.replace(data=thaw(event.data)).data,
    "thaw": lambda event: thaw(event.data),
    "freeze_parsed": lambda event: freeze_parsed(orjson.loads(event.to_json())["data"]),
    "json_native": lambda event: json_native(event.data),
    "loads": lambda event: _json.loads(event.to_json()),
}


@pytest.mark.parametrize("spare", SPARE)
@pytest.mark.parametrize("name", SERIALIZERS)
def test_an_event_as_deep_as_allowed_serializes_alike_at_any_depth(name: str, spare: int) -> None:
    event = _deep_event()
    at_top = outcome(lambda: SERIALIZERS[name](event))
    assert at_top[0] == "ok", at_top
    assert with_frames_left(spare, lambda: SERIALIZERS[name](event)) == at_top


@pytest.mark.parametrize("spare", [None, *SPARE])
def test_json_read_back_refuses_a_wide_integer_deep_inside_for_what_it_is(
    spare: int | None,
) -> None:
    text = (
        _deep_event()
        .to_json()
        .replace(b'"max":18446744073709551615', b'"max":18446744073709551616')
    )
    call = functools.partial(Event.from_json, text)
    got = outcome(call) if spare is None else with_frames_left(spare, call)
    assert got == (
        "error",
        SerializationError,
        "integer 18446744073709551616 does not fit in 64 bits; JSON encoders cannot carry it",
    )


@pytest.mark.parametrize("spare", [None, *SPARE])
def test_encoding_names_a_nan_deep_inside_by_its_path(spare: int | None) -> None:
    data = nested(MAX_DEPTH - 1, "list", inner={"ok": None, "bad": math.nan})
    call = functools.partial(_json.dumps, data)
    got = outcome(call) if spare is None else with_frames_left(spare, call)
    where = "[0]" * (MAX_DEPTH - 1) + "['bad']"
    assert got == (
        "error",
        SerializationError,
        f"nan at {where} is not a finite number; JSON cannot hold it",
    )


def test_json_native_says_no_past_the_limit_and_for_a_cycle() -> None:
    assert json_native(nested(MAX_DEPTH, "mixed"))
    assert not json_native(nested(MAX_DEPTH + 1, "mixed"))
    assert not json_native(cyclic_dict())


@pytest.mark.parametrize("copy", [Event.replace, Event.to_dict], ids=["replace", "to_dict"])
def test_metadata_holding_a_cycle_is_refused_when_copied(copy: Callable[[Event], Any]) -> None:
    event = Event("a.b", {"x": 1}, {"loop": cyclic_list()})
    got = outcome(lambda: copy(event))
    assert got[:2] == ("error", SerializationError)
    assert got[2].startswith("metadata contains a reference cycle")


@pytest.mark.parametrize("spare", SPARE)
def test_metadata_copies_keep_their_shape_at_any_depth(spare: int) -> None:
    shared = freeze({"read": "only"})
    metadata = {"deep": nested(MAX_DEPTH + 20, "list"), "frozen": shared, "n": 1}
    event = Event("a.b", None, metadata)
    got = with_frames_left(spare, event.to_dict)
    assert got[0] == "ok", got
    copied = got[1]["metadata"]
    assert copied["frozen"] is shared  # read-only containers are shared, not copied
    assert copied["deep"] == metadata["deep"]
    containers = list(spine(copied["deep"]))
    assert len(containers) == MAX_DEPTH + 20
    assert all(type(container) is list for container in containers)
    assert not {id(c) for c in containers} & {id(c) for c in spine(metadata["deep"])}
