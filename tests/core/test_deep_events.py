"""Comparing, printing, pickling and copying events give the same answer at any depth of
the caller's stack, for data as deep as an event may hold.

Python's own ``==``, ``repr()``, ``pickle`` and ``copy.deepcopy`` walk nested containers by
recursion, counted together with the caller's frames: with ``MAX_DEPTH`` levels of data,
each of them raised ``RecursionError`` from a handler a few hundred frames deep. Outcomes
are taken at the caller's depth and compared with those at the test's own.
"""

from __future__ import annotations

import copy
import functools
import pickle
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any
from uuid import UUID

import pytest

from pepperpy.event import Event, SerializationError
from pepperpy.event._event import make_event
from pepperpy.event._frozen import MAX_DEPTH, FrozenDict, check_json, freeze
from tests.core.test_freeze_depth import (
    cyclic_list,
    frames_left,
    nested,
    outcome,
    with_frames_left,
)

#: a caller ~800 frames deep under the default limit of 1,000, and one nearer the limit
SPARE = [200, 60]
SHAPES = ["dict", "list", "mixed"]


class Colour(Enum):
    RED = "red"


#: scalars of every kind event data keeps as they are
LEAF = {
    "when": datetime(2024, 5, 1, 12, 30, tzinfo=UTC),
    "day": date(2024, 5, 1),
    "amount": Decimal("12.50"),
    "uuid": UUID("12345678-1234-5678-1234-567812345678"),
    "raw": b"\x00\x01",
    "colour": Colour.RED,
    "n": 2**64 - 1,
    "real": 0.5,
    "none": None,
    "flag": True,
    "text": "é{[",
    "empty": {},
    "nothing": [],
}


def containers(value: Any) -> list[Any]:
    """Every dict and list in ``value``, in order (looked into without recursion)."""
    found: list[Any] = []
    waiting = [value]
    while waiting:
        item = waiting.pop()
        if isinstance(item, dict | list):
            found.append(item)
            waiting.extend(reversed(list(item.values() if isinstance(item, dict) else item)))
    return found


def deep_event(shape: str, *, event_id: str = "e-1") -> Event:
    data = nested(MAX_DEPTH - 2, shape, inner=LEAF)  # LEAF and its {} and [] take two
    metadata = {"trace": "t", "deep": nested(MAX_DEPTH, "list"), "shared": freeze({"a": [1]})}
    return Event("a.b", data, metadata, id=event_id, source="s", subject="x")


def same_event(restored: Any, event: Event) -> tuple[Any, ...]:
    """What a copy must keep, compared at the test's own depth (plain == would do too)."""
    assert isinstance(restored, Event)
    return (
        restored == event,
        restored.to_dict() == event.to_dict(),
        [type(c) for c in containers(restored.data)] == [type(c) for c in containers(event.data)],
        restored.metadata == event.metadata,
        type(restored.metadata["shared"]) is FrozenDict,
        restored.timestamp == event.timestamp,
        (restored.source, restored.subject) == ("s", "x"),
    )


@pytest.mark.parametrize("spare", SPARE)
@pytest.mark.parametrize("shape", SHAPES)
def test_equality_of_deep_events_at_any_depth(shape: str, spare: int) -> None:
    event, twin = deep_event(shape), deep_event(shape)
    other = Event("a.b", nested(MAX_DEPTH - 2, shape, inner={**LEAF, "n": 1}), id="e-1")
    assert outcome(lambda: event == twin) == ("ok", True)
    assert outcome(lambda: event == other) == ("ok", False)
    assert with_frames_left(spare, lambda: event == twin) == ("ok", True)
    assert with_frames_left(spare, lambda: event == other) == ("ok", False)
    assert with_frames_left(spare, lambda: event != other) == ("ok", True)


@pytest.mark.parametrize("spare", SPARE)
@pytest.mark.parametrize("shape", SHAPES)
def test_repr_of_a_deep_event_is_the_same_at_any_depth(shape: str, spare: int) -> None:
    event = deep_event(shape)
    at_top = outcome(lambda: repr(event))
    assert at_top[0] == "ok", at_top
    assert at_top[1] == f"Event(type='a.b', data={event.data!r}, id='e-1')"
    assert with_frames_left(spare, lambda: repr(event)) == at_top
    assert with_frames_left(spare, lambda: str(event)) == at_top


@pytest.mark.parametrize("spare", [None, *SPARE])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(
    "duplicate",
    [
        lambda event: pickle.loads(pickle.dumps(event)),
        lambda event: pickle.loads(pickle.dumps(event, protocol=0)),
        copy.deepcopy,
        copy.copy,
    ],
    ids=["pickle", "pickle-0", "deepcopy", "copy"],
)
def test_deep_events_pickle_and_copy_at_any_depth(
    duplicate: Callable[[Event], Event], shape: str, spare: int | None
) -> None:
    event = deep_event(shape)
    call = functools.partial(duplicate, event)
    got = outcome(call) if spare is None else with_frames_left(spare, call)
    assert got[0] == "ok", got
    assert same_event(got[1], event) == (True,) * 7
    with pytest.raises(TypeError):
        [c for c in containers(got[1].data) if isinstance(c, list)][-1].append(1)


def test_the_events_here_are_as_deep_as_an_event_may_be() -> None:
    for shape in SHAPES:
        data = deep_event(shape).data
        assert Event("a.b", data).data == data
        with pytest.raises(SerializationError, match="nested too deeply"):
            Event("a.b", [data])


@pytest.mark.parametrize(
    "build",
    [
        lambda data: Event("c.d", data),
        lambda data: make_event("c.d", data, None),  # the bus's emit
        lambda data: Event("c.d").replace(data=data),
        freeze,
        check_json,
    ],
    ids=["Event", "make_event", "replace", "freeze", "check_json"],
)
@pytest.mark.parametrize(
    ("wrap", "levels"),
    [
        (lambda d: [d], 1),
        (lambda d: {"inner": d, "n": 1}, 1),
        (lambda d: ({"x": [0, d]},), 3),
    ],
    ids=["list", "dict", "tuple-dict-list"],
)
def test_event_data_put_in_new_data_counts_toward_the_limit(
    build: Callable[[Any], Any], wrap: Callable[[Any], Any], levels: int
) -> None:
    deepest = Event("a.b", nested(MAX_DEPTH, "mixed")).data
    with pytest.raises(SerializationError, match="nested too deeply"):
        build(wrap(deepest))
    fits = Event("a.b", nested(MAX_DEPTH - levels, "mixed")).data  # what the wrapping leaves
    built = build(wrap(fits))
    if isinstance(built, Event):
        built = built.data
    assert built in (None, freeze(wrap(fits)))
    kept = Event("c.d", {"inner": fits}).data["inner"]
    assert kept is fits  # read-only data is shared, not copied


def test_a_stored_events_position_survives_pickling() -> None:
    event = Event("a.b", {"x": [1]}, id="e")._with_position(
        "s.1", 3, 7, datetime(2024, 1, 1, tzinfo=UTC)
    )
    restored = pickle.loads(pickle.dumps(event))
    assert (restored.stream, restored.position, restored.global_position) == ("s.1", 3, 7)
    assert restored.recorded_at == event.recorded_at
    assert restored == event


def test_pickled_copies_do_not_share_metadata_with_the_original() -> None:
    event = Event("a.b", None, {"tags": ["a"], "inner": {"n": [1]}})
    for restored in (pickle.loads(pickle.dumps(event)), copy.deepcopy(event)):
        restored.metadata["inner"]["n"].append(2)
        restored.metadata["tags"].append("b")
        assert event.metadata == {"tags": ["a"], "inner": {"n": [1]}}
        assert restored.data is None


def test_metadata_holding_a_cycle_cannot_be_pickled_and_says_so() -> None:
    event = Event("a.b", {"x": 1}, {"loop": cyclic_list()})
    got = outcome(lambda: pickle.dumps(event))
    assert got[:2] == ("error", SerializationError)
    assert got[2].startswith("metadata contains a reference cycle")


def test_a_lowered_recursion_limit_changes_nothing() -> None:
    event, twin = deep_event("mixed"), deep_event("mixed")
    expected = (repr(event), True)
    before = sys.getrecursionlimit()
    sys.setrecursionlimit(before - frames_left() + 80)  # far fewer frames than MAX_DEPTH
    try:
        got = outcome(lambda: (repr(event), event == twin, pickle.loads(pickle.dumps(event))))
    finally:
        sys.setrecursionlimit(before)
    assert got[0] == "ok", got
    assert got[1][:2] == expected
    assert same_event(got[1][2], event) == (True,) * 7
