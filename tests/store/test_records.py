"""The store's fast JSON encoding of event data agrees with ``Event()``'s rules.

``encode_data`` skips the separate validation walk when orjson alone can tell the data
is plain JSON; whatever it accepts or refuses must match freezing plus encoding.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import uuid
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pepperpy.event import SerializationError, _json
from pepperpy.event._frozen import freeze
from pepperpy.event.store._records import encode_data


@dataclasses.dataclass
class _Point:
    x: int


class _Level(enum.IntEnum):
    HIGH = 1


def _reference(data: Any) -> bytes | type[BaseException]:
    try:
        freeze(data)
        return _json.dumps(data)
    except SerializationError:
        return SerializationError


def _fast(data: Any) -> bytes | type[BaseException]:
    try:
        return encode_data(data)
    except SerializationError:
        return SerializationError


@pytest.mark.parametrize(
    "data",
    [
        {"a": 1},
        {"a": None},
        {"a": float("nan")},
        {"a": [1, float("inf")]},
        {"a": {"b": float("-inf")}},
        {1: 2},
        {"a": 2**64},
        {"a": 2**64 - 1},
        {"a": -(2**63) - 1},
        {"a": {1, 2}},
        {"a": (1, 2)},
        _Point(1),
        {"a": decimal.Decimal("1.5")},
        {"a": decimal.Decimal("NaN")},
        {"a": b"xy"},
        {"a": uuid.UUID(int=5)},
        {"a": datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)},
        {"a": _Level.HIGH},
        {"text": "null"},
        None,
        [None, 1.5],
        object(),
    ],
    ids=repr,
)
def test_the_fast_encoding_accepts_and_refuses_what_event_does(data: Any) -> None:
    assert _fast(data) == _reference(data)


_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=4) | st.integers(0, 3), inner, max_size=4)
    ),
    max_leaves=20,
)


@given(_json_values)
def test_for_any_json_like_value_the_two_encodings_agree(data: Any) -> None:
    assert _fast(data) == _reference(data)


async def test_metadata_holding_nan_is_refused_and_nothing_is_written() -> None:
    # metadata is the mutable part of an event and is not frozen; it must still not lose
    # a NaN by turning it into null on the way to storage
    from pepperpy.event import Event, EventStore

    async with EventStore() as store:
        with pytest.raises(SerializationError, match="not a finite number"):
            await store.append("meta.1", {"type": "t", "metadata": {"score": float("nan")}})
        with pytest.raises(SerializationError, match="not a finite number"):
            await store.append("meta.1", Event("t", {}, {"limits": [1.0, float("inf")]}))
        assert await store.stream_version("meta.1") is None
        await store.append("meta.1", {"type": "t", "metadata": {"note": None}})
        [event] = await store.get_stream("meta.1")
        assert event.metadata == {"note": None}


@pytest.mark.parametrize(
    ("given", "path", "reason"),
    [
        ({"type": "Order Paid"}, "$.type", "whitespace"),
        ({"type": "users.*"}, "$.type", "wildcard"),
        ([{"type": "a"}, {"type": "b..c"}], "$[1].type", "empty token"),
        ([{"type": "a"}, {"type": "b\x00c"}], "$[1].type", "control character"),
        ({"type": "x y", "id": "e-1"}, "$.type", "whitespace"),
    ],
)
async def test_an_event_type_that_is_not_a_topic_is_refused_and_nothing_written(
    given: Any, path: str, reason: str
) -> None:
    from pepperpy.event import Event, EventStore, ValidationError

    async with EventStore() as store:
        with pytest.raises(ValidationError, match=reason) as caught:
            await store.append("types.1", given)
        assert caught.value.errors[0].path == path
        with pytest.raises(ValidationError, match="whitespace"):
            await store.append("types.1", Event("Order Paid"))
        assert await store.stream_version("types.1") is None
        await store.append("types.1", [{"type": "caf\xe9.cr\xe9\xe9"}, Event("order.paid")])
        assert [e.type for e in await store.get_stream("types.1")] == [
            "caf\xe9.cr\xe9\xe9",
            "order.paid",
        ]


@given(_json_values)
def test_freezing_parsed_json_without_checks_equals_the_checked_freeze(data: Any) -> None:
    # the read path freezes what orjson parsed with freeze_parsed (containers only);
    # for anything orjson can write and parse back, it must equal the checked freeze
    import orjson

    from pepperpy.event._frozen import freeze_parsed

    try:
        parsed = orjson.loads(orjson.dumps(data))
    except (TypeError, orjson.JSONDecodeError):
        return  # not JSON orjson round-trips: never stored
    checked = freeze(parsed)
    fast = freeze_parsed(parsed)
    assert fast == checked
    assert _container_types(fast) == _container_types(checked)


def _container_types(value: Any) -> Any:
    if isinstance(value, dict):
        return (type(value), {key: _container_types(item) for key, item in value.items()})
    if isinstance(value, list):
        return (type(value), [_container_types(item) for item in value])
    return type(value)
