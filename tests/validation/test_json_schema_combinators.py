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
    # a key no branch declares: kept, as JSON Schema says, unless the policy forbids it
    assert validator.check("x", {"id": "i", "other": 2})[0] == {"id": "i", "other": 2}
    found = _problems(DERIVED, {"id": "i", "n": 1, "other": 2}, extra_fields="forbid")
    assert [(p.path, p.message) for p in found] == [("other", "unexpected field")]


def test_an_unexpected_key_has_the_same_path_under_all_of_as_in_one_object() -> None:
    """Both name a mapping's key through key_path (a key that is not an identifier in
    brackets), so one field has one path whichever way its schema is written."""
    data = {"id": "i", "n": 1, "other field": 2}
    found = _problems(DERIVED, data, extra_fields="forbid")
    plain = {"properties": {"id": {}, "n": {}}, "additionalProperties": False}
    assert [(p.path, p.message) for p in found] == [("['other field']", "unexpected field")]
    assert [p.path for p in _problems(plain, data)] == ["['other field']"]


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
    validator = EventValidator(extra_fields="forbid")  # so that an undeclared key shows
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


INT_OR_FROM_2 = {"oneOf": [{"type": "integer"}, {"type": "number", "minimum": 2}]}
SHORT_OR_LONG = {
    "type": "string",
    "oneOf": [{"type": "string", "minLength": 2}, {"type": "string", "maxLength": 4}],
}
FOO_BAR_OR_BAZ = {
    "type": "object",
    "oneOf": [{"required": ["foo", "bar"]}, {"required": ["foo", "baz"]}],
}


@pytest.mark.parametrize(
    ("schema", "valid", "invalid"),
    [
        # 1 and 2.5 match one branch each; 3 matches both (overlapping branches), 1.5 neither
        (INT_OR_FROM_2, [1, 2.5], [3, 1.5]),
        (SHORT_OR_LONG, ["foobar"], [3, "foo"]),  # 3: the sibling type refuses it
        (
            FOO_BAR_OR_BAZ,
            [{"foo": 1, "bar": 2}, {"foo": 1, "baz": 3}],
            [{"bar": 2}, {"foo": 1, "bar": 2, "baz": 3}],
        ),
        ({"oneOf": [{"type": "number"}, {}]}, ["foo"], [1]),
        ({"oneOf": [{"enum": [1, 2]}, {"enum": [2, 3]}]}, [1, 3], [2, 4]),
    ],
)
def test_one_of_needs_exactly_one_branch(schema: Any, valid: list[Any], invalid: list[Any]) -> None:
    assert [_valid(schema, data) for data in valid] == [True] * len(valid)
    assert [_valid(schema, data) for data in invalid] == [False] * len(invalid)


def test_one_of_says_which_branches_matched() -> None:
    (several,) = _problems(INT_OR_FROM_2, 3)
    assert "matches 2 oneOf branches (#/oneOf/0, #/oneOf/1)" in several.message
    (none,) = _problems(INT_OR_FROM_2, "x")
    assert "matches none of the oneOf branches (#/oneOf/0, #/oneOf/1)" in none.message
    nested = {"type": "object", "properties": {"v": INT_OR_FROM_2}}
    (inside,) = _problems(nested, {"v": 3})
    assert inside.path == "v"
    assert "(#/properties/v/oneOf/0, #/properties/v/oneOf/1)" in inside.message


def test_one_of_keeps_the_value_the_matching_branch_converted() -> None:
    validator = EventValidator()
    validator.register("x", {"oneOf": [{"type": "string", "format": "date"}, {"type": "integer"}]})
    assert validator.check("x", "2024-05-01")[0] == dt.date(2024, 5, 1)
    schema = {
        "type": "object",
        "properties": {"id": {"type": "string"}},
        "oneOf": [
            {"properties": {"at": {"type": "string", "format": "date-time"}}, "required": ["at"]},
            {"properties": {"n": {"type": "integer"}}, "required": ["n"]},
        ],
    }
    validator.register("y", schema)
    data = validator.check("y", {"id": "i", "at": "2024-05-01T00:00:00Z"})[0]
    assert data == {"id": "i", "at": dt.datetime(2024, 5, 1, tzinfo=dt.UTC)}
    with pytest.raises(ValidationError, match="matches 2 oneOf"):
        validator.check("y", {"id": "i", "at": "2024-05-01T00:00:00Z", "n": 1})


@pytest.mark.parametrize(
    ("schema", "valid", "invalid"),
    [
        ({"not": {"type": "integer"}}, ["foo", 1.5, None], [1, 0]),
        ({"not": {"type": ["integer", "boolean"]}}, ["foo"], [1, True]),
        (
            {"not": {"type": "object", "properties": {"foo": {"type": "string"}}}},
            [1, {"foo": 1}],
            [{"foo": "bar"}, {}],
        ),
        ({"type": "object", "properties": {"foo": {"not": {}}}}, [{}], [{"foo": 1}]),
        ({"not": True}, [], [1, "x", None]),
        ({"not": False}, [1, "x", None], []),
        ({"not": {"not": {"type": "string"}}}, ["x"], [1]),
        ({"type": "string", "not": {"enum": ["a", "b"]}}, ["c"], ["a", 1]),
        ({"allOf": [True, False]}, [], [1]),
        ({"type": "array", "items": False}, [[]], [[1]]),
    ],
)
def test_not_accepts_what_its_schema_refuses(
    schema: Any, valid: list[Any], invalid: list[Any]
) -> None:
    assert [_valid(schema, data) for data in valid] == [True] * len(valid)
    assert [_valid(schema, data) for data in invalid] == [False] * len(invalid)


def test_not_names_the_schema_that_must_not_match() -> None:
    schema = {"type": "object", "properties": {"v": {"not": {"type": "integer"}}}}
    (problem,) = _problems(schema, {"v": 1})
    assert (problem.path, problem.message) == (
        "v",
        "must not match the schema at #/properties/v/not",
    )


NEGATIVE = {"exclusiveMaximum": 0}


@pytest.mark.parametrize(
    ("schema", "valid", "invalid"),
    [
        ({"if": {"const": 0}}, [0, "hello"], []),  # if alone has no effect
        ({"if": NEGATIVE, "then": {"minimum": -10}}, [-1, 3], [-100]),
        ({"if": NEGATIVE, "else": {"multipleOf": 2}}, [-1, 4], [3]),
        ({"if": NEGATIVE, "then": {"minimum": -10}, "else": {"multipleOf": 2}}, [-1, 4], [-100, 3]),
        ({"if": True, "then": {"const": "then"}, "else": {"const": "else"}}, ["then"], ["else"]),
        ({"if": False, "then": {"const": "then"}, "else": {"const": "else"}}, ["else"], ["then"]),
        (
            {"type": "integer", "if": {"minimum": 10}, "then": {"multipleOf": 5}},
            [1, 15],
            [12, "x"],
        ),
    ],
)
def test_if_then_else(schema: Any, valid: list[Any], invalid: list[Any]) -> None:
    assert [_valid(schema, data) for data in valid] == [True] * len(valid)
    assert [_valid(schema, data) for data in invalid] == [False] * len(invalid)


KIND = {
    "type": "object",
    "properties": {"kind": {"enum": ["a", "b"]}},
    "required": ["kind"],
    "if": {"properties": {"kind": {"const": "a"}}},
    "then": {"properties": {"day": {"type": "string", "format": "date"}}, "required": ["day"]},
    "else": {"properties": {"y": {"type": "string"}}, "required": ["y"]},
}


def test_if_then_else_on_a_discriminated_object() -> None:
    validator = EventValidator(extra_fields="forbid")  # {"kind": "b", ..., "z": 1} refused
    validator.register("x", KIND)
    data = validator.check("x", {"kind": "a", "day": "2024-05-01"})[0]
    assert data == {"kind": "a", "day": dt.date(2024, 5, 1)}  # converted by then
    assert validator.check("x", {"kind": "b", "y": "s"})[0] == {"kind": "b", "y": "s"}
    for bad in ({"kind": "a"}, {"kind": "b", "day": "2024-05-01"}, {"kind": "b", "y": "s", "z": 1}):
        with pytest.raises(ValidationError):
            validator.check("x", bad)
    (problem,) = _problems(KIND, {"kind": "a"})
    assert (problem.path, problem.message) == ("day", "field required")
