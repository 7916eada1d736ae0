"""JSON Schema 2020-12 meaning: sibling keywords AND, prefixItems, enum equality, defaults."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

import msgspec
import pytest

from pepperpy.event import ConfigurationError, EventValidator, ValidationError
from pepperpy.event.validation._fast import dec_hook

ACCEPT = object()


def _both_paths(schema: Any, data: Any) -> Any:
    """What the walk gives for ``data`` (or ACCEPT/REJECT), checked against the fast path."""
    validator = EventValidator()
    validator.register("x", schema)
    compiled = validator._latest["x"]
    # an object keeping undeclared keys (JSON Schema's default) has no fast path; with
    # "ignore" it has one, and refuses exactly what keeping them refuses: check that one
    ignoring = EventValidator(extra_fields="ignore")
    ignoring.register("x", schema)
    fast = compiled.fast if compiled.fast is not None else ignoring._latest["x"].fast
    try:
        walked = compiled.explain(data)
    except ValidationError:
        walked = ValidationError
    if fast is not None:
        try:
            msgspec.convert(data, fast, strict=True, dec_hook=dec_hook)
        except msgspec.ValidationError:
            pass
        else:
            assert walked is not ValidationError, "the fast path accepts what the walk refuses"
    try:
        checked = compiled.check(data)
    except ValidationError:
        checked = ValidationError
    assert checked == walked
    return walked


ITEM = {"type": "object", "required": ["id"], "properties": {"id": {"type": "string"}}}
DEFS = {"name": {"type": "string"}, "point": {"type": "object", "properties": {"x": {}}}}


@pytest.mark.parametrize(
    ("schema", "data", "valid"),
    [
        # anyOf next to type/required/properties: all of them apply
        ({**ITEM, "anyOf": [{"required": ["a"]}, {"required": ["b"]}]}, {"a": 1}, False),
        ({**ITEM, "anyOf": [{"required": ["a"]}, {"required": ["b"]}]}, {"id": "i"}, False),
        ({**ITEM, "anyOf": [{"required": ["a"]}, {"required": ["b"]}]}, {"id": "i", "b": 1}, True),
        ({**ITEM, "oneOf": [{"required": ["a"]}]}, {"id": 1, "a": 1}, False),
        ({"type": "string", "anyOf": [{"minLength": 1, "type": "string"}]}, 5, False),
        # enum/const next to type keywords
        ({"type": "string", "enum": ["a", "bb"], "minLength": 2}, "a", False),
        ({"type": "string", "enum": ["a", "bb"], "minLength": 2}, "bb", True),
        ({"type": "integer", "const": 3, "maximum": 2}, 3, False),
        ({"type": "string", "enum": ["a", 1]}, 1, False),
        ({"enum": ["a", "b"], "const": "a"}, "b", False),
        # $ref next to other keywords (2019-09 and later: they apply too)
        ({"$defs": DEFS, "$ref": "#/$defs/name", "type": "string", "minLength": 3}, "ab", False),
        ({"$defs": DEFS, "$ref": "#/$defs/name", "type": "string", "minLength": 3}, "abc", True),
        ({"$defs": DEFS, "$ref": "#/$defs/name", "enum": ["ab", 1]}, 1, False),
        ({"$defs": DEFS, "$ref": "#/$defs/point", **ITEM}, {"id": "i", "x": 1}, True),
        ({"$defs": DEFS, "$ref": "#/$defs/point", **ITEM}, {"x": 1}, False),
    ],
)
def test_sibling_keywords_all_apply(schema: Any, data: Any, valid: bool) -> None:
    result = _both_paths(schema, data)
    assert (result is not ValidationError) is valid


def test_keys_declared_by_a_branch_are_kept_and_converted() -> None:
    schema = {
        **ITEM,
        "anyOf": [{"properties": {"at": {"type": "string", "format": "date"}}, "required": ["at"]}],
    }
    validator = EventValidator(extra_fields="forbid")
    validator.register("x", schema)
    data = validator._latest["x"].check({"id": "i", "at": "2024-05-01"})
    assert data == {"id": "i", "at": dt.date(2024, 5, 1)}
    with pytest.raises(ValidationError):  # still no extras (the policy given)
        validator._latest["x"].check({"id": "i", "at": "2024-05-01", "other": 1})


@pytest.mark.parametrize(
    ("schema", "data", "valid"),
    [
        ({"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}]}, [], True),
        ({"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}]}, [1], True),
        ({"type": "array", "prefixItems": [{"type": "integer"}]}, ["x"], False),
        ({"type": "array", "prefixItems": [{"type": "integer"}]}, [1, "x", None], True),
        ({"type": "array", "prefixItems": [{"type": "integer"}], "items": False}, [1, 2], False),
        ({"type": "array", "prefixItems": [{"type": "integer"}], "items": False}, [1], True),
        (
            {"type": "array", "prefixItems": [{"type": "integer"}], "items": {"type": "string"}},
            [1, "a", 2],
            False,
        ),
        (
            {"type": "array", "prefixItems": [{"type": "integer"}], "items": {"type": "string"}},
            [1, "a", "b"],
            True,
        ),
        ({"type": "array", "prefixItems": [{}], "minItems": 2}, [1], False),
        ({"type": "array", "prefixItems": [{}], "maxItems": 1}, [1, 2], False),
        ({"type": "array", "prefixItems": [{}], "uniqueItems": True}, [1, 1.0], False),
        ({"type": "array", "prefixItems": [{}], "uniqueItems": True}, [1, True], True),
    ],
)
def test_prefix_items_2020_12(schema: Any, data: Any, valid: bool) -> None:
    assert (_both_paths(schema, data) is not ValidationError) is valid


@pytest.mark.parametrize(
    ("schema", "data", "valid"),
    [
        ({"enum": [1]}, 1.0, True),
        ({"enum": [1.0]}, 1, True),
        ({"const": 1}, 1.0, True),
        ({"enum": [1]}, True, False),
        ({"enum": [True]}, 1, False),
        ({"enum": [0]}, False, False),
        ({"enum": [None]}, 0, False),
        ({"enum": [[1, {"a": 2}]]}, [1.0, {"a": 2.0}], True),
        ({"const": {"a": 1, "b": 2}}, {"b": 2, "a": 1}, True),
        ({"const": {"a": 1}}, {"a": 1, "b": 2}, False),
        ({"enum": ["1"]}, 1, False),
    ],
)
def test_enum_and_const_use_json_equality(schema: Any, data: Any, valid: bool) -> None:
    assert (_both_paths(schema, data) is not ValidationError) is valid


def test_python_literal_keeps_exact_types() -> None:
    validator = EventValidator()
    validator.register("x", Literal[1])
    with pytest.raises(ValidationError):
        validator._latest["x"].check(1.0)


@pytest.mark.parametrize(
    ("schema", "where"),
    [
        ({"type": "object", "properties": {"a": {"type": "integer", "default": "x"}}}, "/a/"),
        (
            {
                "type": "object",
                "properties": {
                    "b": {
                        "type": "object",
                        "properties": {"c": {"type": "string", "minLength": 2, "default": "x"}},
                    }
                },
            },
            "#/properties/b/properties/c/default",
        ),
        (
            {
                "$defs": {"n": {"type": "integer", "minimum": 0}},
                "type": "object",
                "properties": {"a": {"$ref": "#/$defs/n", "default": -1}},
            },
            "#/properties/a/default",
        ),
        ({"type": "object", "properties": {"a": {"enum": [1, 2], "default": 3}}}, "/a/default"),
    ],
)
def test_invalid_default_is_refused_at_registration(schema: Any, where: str) -> None:
    with pytest.raises(ConfigurationError, match="default") as info:
        EventValidator().register("x", schema)
    assert where in str(info.value)


def test_valid_defaults_are_accepted_and_filled_in() -> None:
    schema = {
        "type": "object",
        "properties": {
            "a": {"type": "integer", "default": 1},
            "at": {"type": "string", "format": "date-time", "default": "2024-05-01T00:00:00Z"},
            "tags": {"type": "array", "items": {"type": "string"}, "default": ["x"]},
        },
    }
    validator = EventValidator()
    validator.register("x", schema)
    data = validator._latest["x"].check({})
    assert data["a"] == 1 and data["tags"] == ["x"]
