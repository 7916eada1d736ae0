"""Event: immutability, ids, timestamps, validation of data, copies and value semantics."""

from __future__ import annotations

import copy
import dataclasses
import math
import pickle
import re
import sys
import threading
import time
import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from enum import Enum
from typing import Any

import pytest

from pepperpy.event import Event, SerializationError

# -- immutability -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "attribute", ["type", "data", "id", "timestamp", "version", "source", "subject", "metadata"]
)
def test_attributes_cannot_be_reassigned(attribute: str) -> None:
    event = Event("user.created", {"name": "Ann"})
    with pytest.raises(AttributeError):
        setattr(event, attribute, "other")


def test_no_new_attributes_can_be_added() -> None:
    event = Event("user.created")
    with pytest.raises(AttributeError):
        event.extra = 1  # type: ignore[attr-defined]


@pytest.mark.parametrize("metadata", [5, "abc", ["x"], ("k", "v")])
async def test_metadata_that_is_not_a_mapping_is_named_in_the_error(metadata: Any) -> None:
    # it used to fail deep inside dict(): "'int' object is not iterable", "dictionary
    # update sequence element #0 has length 1"
    from pepperpy.event import EventManager

    with pytest.raises(TypeError, match="metadata must be a mapping"):
        Event("a.b", 1, metadata)
    with pytest.raises(TypeError, match="metadata must be a mapping"):
        await EventManager().emit("a.b", 1, metadata)
    with pytest.raises(TypeError, match="metadata must be a mapping"):
        Event("a.b", 1).replace(metadata=metadata)


def test_data_is_deeply_read_only() -> None:
    event = Event("order.placed", {"items": [{"sku": "a", "tags": ["x"]}], "total": 3})
    data = event.data
    with pytest.raises(TypeError):
        data["total"] = 4
    with pytest.raises(TypeError):
        del data["total"]
    with pytest.raises(TypeError):
        data.update(total=5)
    with pytest.raises(TypeError):
        data.setdefault("new", 1)
    with pytest.raises(TypeError):
        data.pop("total")
    with pytest.raises(TypeError):
        data.clear()
    with pytest.raises(TypeError):
        data |= {"x": 1}
    items = data["items"]
    with pytest.raises(TypeError):
        items.append({})
    with pytest.raises(TypeError):
        items[0] = {}
    with pytest.raises(TypeError):
        items += [1]
    with pytest.raises(TypeError):
        items.sort()
    with pytest.raises(TypeError):
        items[0]["sku"] = "b"
    with pytest.raises(TypeError):
        items[0]["tags"].append("y")
    assert event.data == {"items": [{"sku": "a", "tags": ["x"]}], "total": 3}


def test_data_is_a_copy_of_what_was_passed() -> None:
    payload: dict[str, Any] = {"tags": ["a"]}
    event = Event("t", payload)
    payload["tags"].append("b")
    payload["more"] = 1
    assert event.data == {"tags": ["a"]}


def test_frozen_data_still_behaves_like_dicts_and_lists() -> None:
    event = Event("t", {"a": [1, 2], "b": {"c": None}})
    assert isinstance(event.data, dict)
    assert isinstance(event.data["a"], list)
    assert event.data == {"a": [1, 2], "b": {"c": None}}
    assert repr(event.data) == "{'a': [1, 2], 'b': {'c': None}}"
    assert copy.deepcopy(event.data) == event.data
    thawed = event.to_dict()["data"]
    thawed["a"].append(3)  # the dict form is a mutable copy
    assert event.data["a"] == [1, 2]


def test_tuples_become_read_only_lists() -> None:
    event = Event("t", {"point": (1, 2)})
    assert event.data["point"] == [1, 2]
    with pytest.raises(TypeError):
        event.data["point"].append(3)


def test_metadata_is_a_mutable_plain_dict() -> None:
    source = {"trace": "abc"}
    event = Event("t", None, source)
    event.metadata["processed_at"] = 1.5
    assert event.metadata == {"trace": "abc", "processed_at": 1.5}
    assert source == {"trace": "abc"}, "the caller's mapping is copied, not aliased"
    assert type(event.metadata) is dict
    empty = Event("t")
    empty.metadata["k"] = "v"
    assert empty.metadata == {"k": "v"}


# -- ids ----------------------------------------------------------------------------------


def test_ids_are_uuid7_with_the_rfc_variant() -> None:
    event = Event("t")
    parsed = uuid.UUID(event.id)
    assert str(parsed) == event.id
    assert parsed.version == 7
    assert parsed.variant == uuid.RFC_4122
    assert event.id == event.id, "formatted once, stable afterwards"


def test_id_carries_the_creation_millisecond() -> None:
    before = time.time_ns() // 1_000_000
    event = Event("t")
    after = time.time_ns() // 1_000_000
    unix_ms = uuid.UUID(event.id).int >> 80
    assert before <= unix_ms <= after


def test_ids_strictly_increase_in_a_tight_loop() -> None:
    events = [Event("t") for _ in range(10_000)]
    ids = [e.id for e in events]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
    assert all(a < b for a, b in zip(ids, ids[1:], strict=False))
    # so many in so little time means many shared a millisecond: order held inside one too
    millis = [uuid.UUID(i).int >> 80 for i in ids]
    assert len(set(millis)) < len(millis)
    assert millis == sorted(millis)


def test_ids_are_unique_across_threads_and_increase_within_each() -> None:
    results: list[list[str]] = [[] for _ in range(4)]

    def make(slot: int) -> None:
        results[slot] = [Event("t").id for _ in range(2_000)]

    threads = [threading.Thread(target=make, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = [i for ids in results for i in ids]
    assert len(set(everything)) == len(everything)
    for ids in results:
        assert ids == sorted(ids)


def test_explicit_id_is_kept_and_validated() -> None:
    assert Event("t", id="order-1").id == "order-1"
    with pytest.raises(TypeError):
        Event("t", id="")
    with pytest.raises(TypeError):
        Event("t", id=123)  # type: ignore[arg-type]


# -- timestamps and version -------------------------------------------------------------


def test_timestamp_is_aware_utc_and_current() -> None:
    before = datetime.now(UTC)
    event = Event("t")
    after = datetime.now(UTC)
    assert event.timestamp.tzinfo is not None
    assert event.timestamp.utcoffset() == timedelta(0)
    assert before - timedelta(milliseconds=1) <= event.timestamp <= after


def test_given_timestamp_is_converted_to_utc() -> None:
    local = datetime(2024, 5, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    event = Event("t", timestamp=local)
    assert event.timestamp == local
    assert event.timestamp.utcoffset() == timedelta(0)
    assert event.timestamp.hour == 10


def test_naive_or_wrong_timestamps_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        Event("t", timestamp=datetime(2024, 1, 1))
    with pytest.raises(TypeError):
        Event("t", timestamp="2024-01-01T00:00:00Z")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "timestamp",
    [
        datetime.max.replace(tzinfo=timezone(timedelta(hours=-5))),
        datetime.min.replace(tzinfo=timezone(timedelta(hours=5))),
    ],
)
def test_a_timestamp_outside_datetimes_range_in_utc_is_a_clear_error(timestamp: datetime) -> None:
    # the conversion to UTC overflows: a ValueError naming the value, not OverflowError
    with pytest.raises(ValueError, match="outside the range of datetime once in UTC"):
        Event("t", timestamp=timestamp)
    with pytest.raises(ValueError, match="outside the range"):
        Event("t").replace(timestamp=timestamp)
    with pytest.raises(SerializationError, match="outside the range"):
        Event.from_cloudevent(
            {
                "specversion": "1.0",
                "id": "1",
                "source": "s",
                "type": "t",
                "time": timestamp.isoformat(),
            }
        )


def test_an_event_with_a_past_timestamp_still_gets_a_fresh_increasing_id() -> None:
    first = Event("t")
    old = Event("t", timestamp=datetime(2001, 1, 1, tzinfo=UTC))
    assert old.id > first.id


@pytest.mark.parametrize("version", [0, -1, 1.0, "2", True, None, 2**31, 2**63])
def test_version_must_be_a_positive_int(version: Any) -> None:
    with pytest.raises((TypeError, ValueError)):
        Event("t", version=version)


def test_the_greatest_version_is_the_narrowest_backend_column() -> None:
    assert Event("t", version=2**31 - 1).version == 2**31 - 1
    with pytest.raises(ValueError, match="from 1 to 2147483647"):
        Event("t", version=2**31)


@pytest.mark.parametrize(
    ("field", "text", "reason"),
    [
        ("type", "user\x00created", "NUL"),
        ("type", "caf\xe9\x00", "NUL"),
        ("type", "user.\udc80", "lone surrogate"),
        ("id", "id\x00", "NUL"),
        ("id", "\ud800", "lone surrogate"),
        ("source", "src\x00", "NUL"),
        ("subject", "\udfff", "lone surrogate"),
    ],
)
def test_names_no_store_can_hold_are_refused(field: str, text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason) as caught:
        Event(text) if field == "type" else Event("t", **{field: text})
    assert f"event {field}" in str(caught.value)
    with pytest.raises(ValueError, match=reason):
        Event("t").replace(**{field: text})


def test_a_long_ascii_type_is_refused_by_the_constructor_and_make_event() -> None:
    # the constructor measured a type only when it held a NUL or non-ASCII, so a long
    # ASCII type was taken, and the event then failed its own replace() and JSON round trip
    from pepperpy.event import PatternError
    from pepperpy.event._event import make_event

    too_long = "order." + "x" * 1100
    for build in (lambda: Event(too_long), lambda: Event("t").replace(type=too_long)):
        with pytest.raises(ValueError, match="event type .* is longer than 1024 bytes in UTF-8"):
            build()
    with pytest.raises(PatternError, match="longer than 1024 bytes in UTF-8"):  # emit's error
        make_event(too_long, {"n": 1}, None)
    longest = "order." + "x" * 1018  # 1,024 bytes: taken, and survives its round trip
    for event in (Event(longest, {"n": 1}), make_event(longest, {"n": 1}, None)):
        assert Event.from_json(event.to_json()).type == event.replace(type=longest).type
    dead = "deadletter." + longest  # a dead letter may pass it by its prefix, as elsewhere
    assert Event(dead).type == make_event(dead, None, None).type == dead


def test_non_ascii_names_are_fine() -> None:
    event = Event("caf\xe9.cr\xe9\xe9", id="\u2603", source="\U0001f600", subject="\xfc")
    assert (event.type, event.id, event.source, event.subject) == (
        "caf\xe9.cr\xe9\xe9",
        "\u2603",
        "\U0001f600",
        "\xfc",
    )


@pytest.mark.parametrize("field", ["source", "subject"])
@pytest.mark.parametrize("bad", [123, ["a"], ("x", "y"), b"s", ""])
def test_source_and_subject_are_non_empty_strs(field: str, bad: Any) -> None:
    with pytest.raises(TypeError, match=f"event {field} must be a non-empty str or None"):
        Event("t", **{field: bad})
    with pytest.raises(TypeError, match=f"event {field} must be a non-empty str or None"):
        Event("t").replace(**{field: bad})


def test_version_defaults_to_one() -> None:
    assert Event("t").version == 1
    assert Event("t", version=3).version == 3


@pytest.mark.parametrize("bad_type", ["", None, 5, b"t"])
def test_type_must_be_a_non_empty_str(bad_type: Any) -> None:
    with pytest.raises(TypeError):
        Event(bad_type)


# -- data validation at construction ----------------------------------------------------


@pytest.mark.parametrize(
    ("data", "where"),
    [
        ({"a": [1, {"b": math.nan}]}, "['a'][1]['b']"),
        ({"x": math.inf}, "['x']"),
        ([object()], "[0]"),
        ({"nested": {1: "int key"}}, "['nested']"),
        ({"s": {1, 2}}, "['s']"),
        ({"d": Decimal("NaN")}, "['d']"),
    ],
)
def test_bad_data_is_refused_naming_the_path(data: Any, where: str) -> None:
    with pytest.raises(SerializationError) as caught:
        Event("t", data)
    assert f"at data{where}" in str(caught.value)


def test_non_str_keys_at_the_top_are_refused() -> None:
    with pytest.raises(SerializationError, match="keys must be strings"):
        Event("t", {1: "x"})


@pytest.mark.parametrize("value", [math.nan, -math.inf, object(), {1, 2}, lambda: None])
def test_bad_scalar_data_is_refused(value: Any) -> None:
    with pytest.raises(SerializationError):
        Event("t", value)


def test_serialization_error_is_a_type_error_and_an_event_error() -> None:
    from pepperpy.event import EventError

    with pytest.raises(TypeError):
        Event("t", object())
    with pytest.raises(EventError):
        Event("t", object())


class Color(Enum):
    RED = "red"


@dataclasses.dataclass
class Point:
    x: int
    y: int


def test_the_serializer_types_are_accepted() -> None:
    when = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    ident = uuid.uuid4()
    event = Event(
        "t",
        {
            "when": when,
            "day": date(2024, 1, 2),
            "id": ident,
            "amount": Decimal("1.10"),
            "blob": b"\x00\x01",
            "color": Color.RED,
            "point": Point(1, 2),
        },
    )
    assert event.data["when"] == when
    assert event.data["id"] == ident
    assert event.data["amount"] == Decimal("1.10")
    assert event.data["point"] == {"x": 1, "y": 2}
    decoded = Event.from_json(event.to_json()).data
    assert decoded["when"] == "2024-01-02T03:04:05+00:00"
    assert decoded["id"] == str(ident)
    assert decoded["amount"] == "1.10"
    assert decoded["color"] == "red"
    assert decoded["point"] == {"x": 1, "y": 2}


class Limit(Enum):
    NONE = math.inf


class Period(Enum):
    DAY = timedelta(days=1)


class Wide(int, Enum):
    BIG = 2**70


class Plan(Enum):
    BASIC = {"seats": [1]}  # mutable, the point of the test


class Planet(Enum):
    EARTH = (5.97e24, 6.37e6)


@pytest.mark.parametrize(
    ("member", "reason"),
    [
        (Limit.NONE, "the value of Limit.NONE: inf is not a finite number"),
        (Period.DAY, "the value of Period.DAY: value of type timedelta is not JSON"),
        (Wide.BIG, "the value of Wide.BIG: integer 1180591620717411303424 does not fit"),
    ],
)
def test_an_enum_members_value_is_checked_when_the_event_is_built(
    member: Enum, reason: str
) -> None:
    # a member was kept unchecked: inf went out as null, a timedelta failed only in
    # to_json(), an int past 64 bits was taken
    for build in (
        lambda: Event("t", {"x": member}),
        lambda: Event("t", [member]),
        lambda: Event("t").replace(data={"x": member}),
    ):
        with pytest.raises(SerializationError, match=re.escape(reason)):
            build()
    from pepperpy.event._event import make_event

    with pytest.raises(SerializationError, match=re.escape(f"at data['x']: {reason}")):
        make_event("t", {"x": member}, None)


def test_an_enum_member_holding_a_container_is_stored_as_its_value_frozen() -> None:
    event = Event("t", {"plan": Plan.BASIC, "planet": Planet.EARTH, "color": Color.RED})
    assert event.data["color"] is Color.RED  # a scalar value: the member is kept
    assert event.data["plan"] == {"seats": [1]}
    assert event.data["planet"] == [5.97e24, 6.37e6]
    before = event.to_json()
    Plan.BASIC.value["seats"].append(2)  # the member's own value is still mutable
    try:
        assert event.to_json() == before
        assert event.data["plan"] == {"seats": [1]}
        with pytest.raises(TypeError):
            event.data["plan"]["seats"].append(3)
    finally:
        Plan.BASIC.value["seats"].pop()


# -- replace, pickling, equality, dict form ---------------------------------------------


def test_replace_copies_with_changes_and_keeps_the_id() -> None:
    event = Event("user.created", {"n": 1}, {"m": 1}, version=2, source="svc", subject="u1")
    copy_ = event.replace(data={"n": 2})
    assert copy_.id == event.id
    assert copy_.data == {"n": 2}
    assert copy_.type == "user.created"
    assert copy_.version == 2
    assert (copy_.source, copy_.subject) == ("svc", "u1")
    assert copy_.metadata == {"m": 1}
    copy_.metadata["n"] = 2
    assert event.metadata == {"m": 1}, "metadata of the copy is its own dict"
    assert event.data == {"n": 1}
    renamed = event.replace(type="user.renamed", id="x-1", version=3, source=None)
    assert (renamed.type, renamed.id, renamed.version, renamed.source) == (
        "user.renamed",
        "x-1",
        3,
        None,
    )


def test_copy_replace_is_replace() -> None:
    # copy.replace (Python 3.13) on an Event failed with "replace() does not support
    # Event objects", as it does for a type with no __replace__
    event = Event("user.created", {"n": 1}, {"m": 1}, version=2, source="svc")
    if sys.version_info >= (3, 13):
        changed = copy.replace(event, data={"n": 2})  # type: ignore[attr-defined,unused-ignore]
    else:
        changed = event.__replace__(data={"n": 2})
    assert changed == event.replace(data={"n": 2})
    assert (changed.id, changed.data, changed.source) == (event.id, {"n": 2}, "svc")
    with pytest.raises(TypeError, match="unknown"):
        event.__replace__(colour="red")


def test_replace_validates_like_the_constructor() -> None:
    event = Event("t")
    with pytest.raises(TypeError, match="unknown"):
        event.replace(colour="red")
    with pytest.raises(SerializationError):
        event.replace(data={"x": math.nan})
    with pytest.raises(ValueError):
        event.replace(version=0)
    with pytest.raises(TypeError):
        event.replace(type="")
    with pytest.raises(TypeError):
        event.replace(id=5)
    with pytest.raises(ValueError):
        event.replace(timestamp=datetime(2024, 1, 1))


def test_pickle_round_trip_keeps_everything() -> None:
    event = Event(
        "user.created", {"tags": ["a"], "n": 1}, {"trace": "t"}, version=2, source="s", subject="x"
    )
    restored = pickle.loads(pickle.dumps(event))
    assert restored == event
    assert restored.to_dict() == event.to_dict()
    assert restored.timestamp == event.timestamp
    with pytest.raises(TypeError):
        restored.data["tags"].append("b")


def test_equality_and_hash_follow_identity_and_content() -> None:
    event = Event("t", {"a": 1})
    twin = event.replace()
    assert twin == event
    assert hash(twin) == hash(event)
    assert len({event, twin}) == 1
    assert event != Event("t", {"a": 1}), "a different id is a different event"
    assert event != event.replace(data={"a": 2})
    assert event != "not an event"


def test_to_dict_is_plain_and_json_able() -> None:
    import json

    when = datetime(2024, 1, 1, tzinfo=UTC)
    event = Event("t", {"a": [1]}, {"m": 1}, id="e1", timestamp=when, source="s")
    out = event.to_dict()
    assert out == {
        "id": "e1",
        "type": "t",
        "data": {"a": [1]},
        "metadata": {"m": 1},
        "timestamp": "2024-01-01T00:00:00+00:00",
        "version": 1,
        "source": "s",
    }
    assert type(out["data"]) is dict and type(out["data"]["a"]) is list
    json.dumps(out)


def test_events_not_read_from_a_store_have_no_position() -> None:
    event = Event("t")
    assert (event.stream, event.position, event.global_position, event.recorded_at) == (
        None,
        None,
        None,
        None,
    )
    assert "stream" not in event.to_dict()


def test_repr_names_type_data_and_id() -> None:
    event = Event("user.created", {"a": 1}, id="e-1")
    assert repr(event) == "Event(type='user.created', data={'a': 1}, id='e-1')"


def _freeze_clock(monkeypatch: pytest.MonkeyPatch, readings: list[int]) -> None:
    """Make every wall-clock read in the id code return ``readings[0]`` (changeable)."""
    import pepperpy.event._event as event_module
    import pepperpy.event._ids as ids_module

    def clock() -> int:
        return readings[0]

    monkeypatch.setattr(time, "time_ns", clock)
    for module in (event_module, ids_module):
        if hasattr(module, "_time_ns"):
            monkeypatch.setattr(module, "_time_ns", clock)


def _unix_ms(event_id: str) -> int:
    return uuid.UUID(event_id).int >> 80


async def test_ten_thousand_ids_within_one_millisecond_strictly_increase(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pepperpy.event import EventManager

    frozen = time.time_ns()  # not earlier than any reading so far: the clock never goes back
    _freeze_clock(monkeypatch, [frozen])
    made = [Event("t") for _ in range(10_000)]
    manager = EventManager()
    emitted = [await manager.emit("t", n) for n in range(100)]
    ids = [e.id for e in made + emitted]
    assert {_unix_ms(i) for i in ids} == {frozen // 1_000_000}, "the clock was frozen"
    assert all(a < b for a, b in zip(ids, ids[1:], strict=False))
    assert all(e.timestamp == made[0].timestamp for e in made)


def test_ids_keep_increasing_when_the_clock_steps_back(monkeypatch: pytest.MonkeyPatch) -> None:
    readings = [time.time_ns()]
    _freeze_clock(monkeypatch, readings)
    before = Event("t")
    readings[0] -= 5_000_000_000  # NTP steps the clock back five seconds
    after = Event("t")
    assert after.id > before.id
    assert _unix_ms(after.id) >= _unix_ms(before.id)


def test_cyclic_data_is_a_serialization_error_not_a_recursion_error() -> None:
    from pepperpy.event import EventManager

    cyclic: list[Any] = []
    cyclic.append(cyclic)
    looped: dict[str, Any] = {}
    looped["self"] = looped
    for data in (cyclic, looped):
        with pytest.raises(SerializationError, match="cycle"):
            Event("t", data)
        with pytest.raises(SerializationError, match="cycle"):
            Event("t").replace(data=data)

    async def emit() -> None:
        await EventManager().emit("t", cyclic)

    import asyncio

    with pytest.raises(SerializationError, match="cycle"):
        asyncio.run(emit())


def test_id_time_and_timestamp_agree_whichever_is_read_first() -> None:
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    for read_id_first in (True, False):
        for _ in range(200):
            event = Event("t")
            if read_id_first:
                event_id, when = event.id, event.timestamp
            else:
                when, event_id = event.timestamp, event.id
            assert _unix_ms(event_id) == (when - epoch) // timedelta(milliseconds=1)


def test_copy_and_deepcopy_give_equal_read_only_events() -> None:
    event = Event("t", {"a": [1]}, {"m": 1}, source="s")
    for duplicate in (copy.copy(event), copy.deepcopy(event)):
        assert duplicate == event
        assert duplicate.to_dict() == event.to_dict()
        with pytest.raises(TypeError):
            duplicate.data["a"].append(2)


@pytest.mark.parametrize(
    ("data", "where"),
    [(2**64, "integer"), ({"a": 2**70}, "data['a']"), ([1, -(2**64)], "data[1]")],
)
def test_integers_beyond_64_bits_are_refused_at_construction(data: object, where: str) -> None:
    with pytest.raises(SerializationError, match=re.escape(where)):
        Event("x", data)
    edge = Event("x", {"max": 2**64 - 1, "min": -(2**63)})
    assert edge.data == {"max": 2**64 - 1, "min": -(2**63)}


def test_flat_payloads_with_floats_are_frozen_and_checked() -> None:
    event = Event("x", {"total": 12.5, "n": 3, "sku": "abc"})
    assert event.data == {"total": 12.5, "n": 3, "sku": "abc"}
    with pytest.raises(TypeError):
        event.data["total"] = 1.0
    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(SerializationError, match=r"data\['total'\]"):
            Event("x", {"n": 1, "total": bad})


def test_stored_identity_gives_the_id_and_the_time_in_microseconds() -> None:
    from pepperpy.event._event import stored_identity
    from pepperpy.event.store.base import to_micros

    new = Event("t")
    event_id, micros = stored_identity(new)
    assert event_id == new.id  # the id the event keeps
    assert micros == to_micros(new.timestamp)
    when = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    dated = Event("t", id="given", timestamp=when)
    assert stored_identity(dated) == ("given", to_micros(when))


def test_copies_do_not_share_nested_metadata_with_the_original() -> None:
    event = Event("t", {"x": 1}, {"ctx": {"tenant": "a", "tags": ["x"]}, "n": 1})
    exported = event.to_dict()
    exported["metadata"]["ctx"]["tenant"] = "other"
    exported["metadata"]["ctx"]["tags"].append("y")
    copy = event.replace(data={"x": 2})
    copy.metadata["ctx"]["tenant"] = "copy"
    assert event.metadata == {"ctx": {"tenant": "a", "tags": ["x"]}, "n": 1}
    assert copy.metadata["ctx"] == {"tenant": "copy", "tags": ["x"]}


def test_a_uuid_id_is_kept_as_its_canonical_text() -> None:
    import uuid

    from pepperpy.event import Event

    given = uuid.UUID("0190b0c4-6a5e-7c3d-9f10-2b3c4d5e6f70")
    event = Event("order.placed", {}, id=given)
    assert event.id == "0190b0c4-6a5e-7c3d-9f10-2b3c4d5e6f70"
    assert event.replace(id=uuid.UUID(int=1)).id == "00000000-0000-0000-0000-000000000001"
    with pytest.raises(TypeError, match=r"a non-empty str or a UUID, got 7"):
        Event("order.placed", {}, id=7)  # type: ignore[arg-type]
