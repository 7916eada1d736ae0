"""A JSON Schema property ``default`` is filled in as its schema converts it.

An absent property once got the default as written (the string ``"2024-01-01"``) while the
same value sent explicitly became a ``date``: handlers saw either type for one field, and
validated data changed when validated again.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import pytest

from pepperpy.event import EventValidator
from pepperpy.event._json import dumps

FORMATS = [
    ("date", "2024-01-01", dt.date(2024, 1, 1)),
    ("date-time", "2024-01-01T00:00:00Z", dt.datetime(2024, 1, 1, tzinfo=dt.UTC)),
    (
        "uuid",
        "2EB8AA08-AA98-11EA-B4AA-73B441D16380",
        uuid.UUID("2eb8aa08-aa98-11ea-b4aa-73b441d16380"),
    ),
]


def _plain(value: Any) -> Any:
    """Frozen event data as plain dicts and lists, to compare types exactly."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def _typed(value: Any) -> Any:
    """``value`` with the type of every atom, so ``"2024-01-01"`` differs from a date."""
    if isinstance(value, dict):
        return {key: _typed(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_typed(item) for item in value]
    return (type(value).__name__, value)


@pytest.mark.parametrize("extra", ["forbid", "allow"])  # forbid: fast path; allow: the walk
@pytest.mark.parametrize(("fmt", "default", "converted"), FORMATS)
async def test_a_formatted_default_is_converted_as_the_value_given(
    extra: Any, fmt: str, default: str, converted: Any
) -> None:
    validator = EventValidator(extra_fields=extra)
    prop = {"type": "string", "format": fmt, "default": default}
    validator.register("t.x", {"type": "object", "properties": {"d": prop}})
    absent = _plain((await validator.validate("t.x", {})).data)
    given = _plain((await validator.validate("t.x", {"d": default})).data)
    assert _typed(absent) == _typed(given) == _typed({"d": converted})
    again = _plain((await validator.validate("t.x", absent)).data)
    assert _typed(again) == _typed(absent)
    assert _typed(validator.check("t.x", {})[0]) == _typed({"d": converted})


@pytest.mark.parametrize("extra", ["forbid", "allow"])
async def test_a_nested_object_default_holding_formatted_strings(extra: Any) -> None:
    validator = EventValidator(extra_fields=extra)
    inner = {
        "type": "object",
        "properties": {
            "at": {"type": "string", "format": "date-time"},
            "ids": {"type": "array", "items": {"type": "string", "format": "uuid"}},
        },
        "default": {"at": "2024-05-01T10:00:00+02:00", "ids": [str(uuid.UUID(int=1))]},
    }
    validator.register("t.x", {"type": "object", "properties": {"o": inner}})
    expected = {
        "o": {
            "at": dt.datetime(2024, 5, 1, 10, tzinfo=dt.timezone(dt.timedelta(hours=2))),
            "ids": [uuid.UUID(int=1)],
        }
    }
    absent = _plain((await validator.validate("t.x", {})).data)
    assert _typed(absent) == _typed(expected)
    given = _plain((await validator.validate("t.x", {"o": inner["default"]})).data)
    assert _typed(given) == _typed(absent)
    assert _typed(_plain((await validator.validate("t.x", absent)).data)) == _typed(absent)
    # each event gets its own copy of a container default
    first, second = validator.check("t.x", {})[0], validator.check("t.x", {})[0]
    first["o"]["ids"].append("x")
    assert second == expected


async def test_a_default_whose_converted_text_a_pattern_refuses_stays_as_written() -> None:
    # the converted-or-given rule: the datetime's text (+00:00) breaks the pattern
    validator = EventValidator()
    prop = {
        "type": "string",
        "format": "date-time",
        "pattern": "Z$",
        "default": "2024-01-01T00:00:00Z",
    }
    validator.register("t.x", {"type": "object", "properties": {"d": prop}})
    absent = (await validator.validate("t.x", {})).data
    assert absent == {"d": "2024-01-01T00:00:00Z"}
    assert (await validator.validate("t.x", {"d": "2024-01-01T00:00:00Z"})).data == absent
    assert (await validator.validate("t.x", absent)).data == absent


async def test_converted_defaults_survive_a_trip_through_json() -> None:
    validator = EventValidator()
    prop = {"type": "string", "format": "date", "default": "2024-01-01"}
    validator.register("t.x", {"type": "object", "properties": {"d": prop}})
    event = await validator.validate("t.x", {})
    data = json.loads(dumps(event.data))
    assert data == {"d": "2024-01-01"}
    again = _plain((await validator.validate("t.x", data)).data)
    assert _typed(again) == _typed({"d": dt.date(2024, 1, 1)})


@pytest.mark.parametrize(
    ("annotation", "default", "words"),
    [
        # check() raised msgspec's TypeError for every event lacking the field
        (Any, object(), "Encoding objects of type object"),
        # validate() returned events that failed only when stored or published
        (Any, "\ud800", "lone surrogate"),
        (int, 2**70, "64-bit range"),
        (float, float("nan"), "not a finite number"),
    ],
)
def test_a_default_that_is_no_event_data_is_refused_at_registration(
    annotation: Any, default: Any, words: str
) -> None:
    import dataclasses

    import msgspec

    from pepperpy.event import ConfigurationError

    as_dataclass = dataclasses.make_dataclass("D", [("x", annotation, default)])
    as_struct = msgspec.defstruct("S", [("x", annotation, default)])
    keyed = dataclasses.make_dataclass(
        "K", [("x", Any, dataclasses.field(default_factory=lambda: {1: 1}))]
    )
    for schema in (as_dataclass, as_struct):
        with pytest.raises(ConfigurationError, match=f"x: its default is not event data.*{words}"):
            EventValidator().register("t", schema)
    with pytest.raises(ConfigurationError, match="object keys must be str"):
        EventValidator().register("t", keyed)
