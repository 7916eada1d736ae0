"""JSON Schema 2020-12 combinators: allOf, oneOf, not, if/then/else (cases from the spec)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from pepperpy.event import EventValidator, ValidationError

from .test_json_schema_semantics import _both_paths


def _valid(schema: Any, data: Any) -> bool:
    return _both_paths(schema, data) is not ValidationError


def _problems(schema: Any, data: Any, **policy: Any) -> list[Any]:
    validator = EventValidator(**policy)
    validator.register("x", schema)
    with pytest.raises(ValidationError) as info:
        validator.check("x", data)
    return info.value.errors


BAR = {"properties": {"bar": {"type": "integer"}}, "required": ["bar"]}
FOO = {"properties": {"foo": {"type": "string"}}, "required": ["foo"]}
BAZ = {"properties": {"baz": {"type": "null"}}, "required": ["baz"]}


@pytest.mark.parametrize(
    ("schema", "data", "valid"),
    [
        ({"allOf": [BAR, FOO]}, {"foo": "baz", "bar": 2}, True),
        ({"allOf": [BAR, FOO]}, {"foo": "baz"}, False),  # the first branch fails
        ({"allOf": [BAR, FOO]}, {"bar": 2}, False),  # the second branch fails
        ({"allOf": [BAR, FOO]}, {"foo": "baz", "bar": "quux"}, False),
        ({**BAR, "allOf": [FOO, BAZ]}, {"foo": "quux", "bar": 2, "baz": None}, True),
        ({**BAR, "allOf": [FOO, BAZ]}, {"foo": "quux", "baz": None}, False),  # base fails
        ({**BAR, "allOf": [FOO, BAZ]}, {"bar": 2, "baz": None}, False),
        ({**BAR, "allOf": [FOO, BAZ]}, {"foo": "quux", "bar": 2}, False),
        (
            {"allOf": [{"type": "integer", "maximum": 30}, {"type": "integer", "minimum": 20}]},
            25,
            True,
        ),
        (
            {"allOf": [{"type": "integer", "maximum": 30}, {"type": "integer", "minimum": 20}]},
            35,
            False,
        ),
        ({"allOf": [{}]}, 1, True),
        ({"allOf": [{}, {"type": "string"}]}, 1, False),
        ({"type": "string", "allOf": [{"type": "string", "maxLength": 3}]}, "abcd", False),
        ({"type": "string", "allOf": [{"type": "string", "maxLength": 3}]}, "abc", True),
        ({"allOf": [{"type": "string"}, {"enum": ["a", 1]}]}, 1, False),
        ({"allOf": [{"type": "string"}, {"enum": ["a", 1]}]}, "a", True),
        ({"allOf": [{"allOf": [{"type": "integer"}]}, {"const": 2}]}, 2, True),
    ],
)
def test_all_of_needs_every_branch(schema: Any, data: Any, valid: bool) -> None:
    assert _valid(schema, data) is valid


def test_all_of_reports_the_problems_of_every_failing_branch() -> None:
    found = _problems({"allOf": [BAR, FOO]}, {"foo": 1, "bar": "x"})
    assert sorted(p.path for p in found) == ["bar", "foo"]


DEFS = {
    "base": {
        "type": "object",
        "properties": {"id": {"type": "string"}, "at": {"type": "string", "format": "date-time"}},
        "required": ["id"],
    }
}
DERIVED = {
    "$defs": DEFS,
    "allOf": [{"$ref": "#/$defs/base"}, {"properties": {"n": {"type": "integer"}}}],
}


def test_keys_of_every_all_of_branch_are_declared_and_converted() -> None:
    validator = EventValidator()
    validator.register("x", DERIVED)
    data, _ = validator.check("x", {"id": "i", "n": 1, "at": "2024-05-01T00:00:00Z"})
    assert data == {"id": "i", "n": 1, "at": dt.datetime(2024, 5, 1, tzinfo=dt.UTC)}
    found = _problems(DERIVED, {"id": "i", "n": 1, "other": 2})
    assert [(p.path, p.message) for p in found] == [("other", "unexpected field")]


def test_keys_no_all_of_branch_declares_follow_the_extra_fields_policy() -> None:
    ignoring = EventValidator(extra_fields="ignore")
    ignoring.register("x", DERIVED)
    assert ignoring.check("x", {"id": "i", "other": 2})[0] == {"id": "i"}
    allowing = EventValidator(extra_fields="allow")
    allowing.register("x", DERIVED)
    assert allowing.check("x", {"id": "i", "other": 2})[0] == {"id": "i", "other": 2}


def test_all_of_beside_type_keywords_declares_and_converts_its_keys() -> None:
    schema = {
        "type": "object",
        "properties": {"id": {"type": "string"}},
        "allOf": [{"properties": {"day": {"type": "string", "format": "date"}}}],
    }
    validator = EventValidator()
    validator.register("x", schema)
    assert validator.check("x", {"id": "i", "day": "2024-05-01"})[0] == {
        "id": "i",
        "day": dt.date(2024, 5, 1),
    }
    with pytest.raises(ValidationError, match="other"):
        validator.check("x", {"id": "i", "other": 1})


async def test_all_of_data_is_frozen_into_the_event() -> None:
    validator = EventValidator()
    validator.register("x", DERIVED)
    event = await validator.validate("x", {"id": "i", "n": 1})
    assert event.data == {"id": "i", "n": 1}
