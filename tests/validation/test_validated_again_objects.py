"""Validated objects validate again: keywords judge an object as it is kept.

With ``extra_fields="ignore"`` an object drops the keys it does not declare, and every
object fills in its defaults; the keywords beside ``properties`` and the branches of
``oneOf``/``anyOf`` judge the object so, and a result that another branch would take
(and so match twice, or change) is refused. See docs/validation.md, "Validated data
validates again".
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pepperpy.event import ConfigurationError, EventValidator, ValidationError
from pepperpy.event._json import dumps, loads

from .test_consistency import DATA, SCALAR_SCHEMAS, _object

EMPTY = {"type": "object", "properties": {}}
A_STRING = {"type": "object", "properties": {"a": {"type": "string"}}}


@dataclasses.dataclass
class WithDefault:
    a: str = "x"


@dataclasses.dataclass
class Nothing:
    pass


@dataclasses.dataclass
class Holder:
    v: WithDefault | Nothing


def _validated_again(validator: EventValidator, data: Any) -> Any:
    """``data`` validated, after checking that the result validates again unchanged."""
    first, _ = validator.check("x", data)
    assert validator.check("x", first)[0] == first
    assert validator.check("x", loads(dumps(first)))[0] == first
    return first


@pytest.mark.parametrize(
    ("policy", "schema", "data", "refused"),
    [
        # an ignored key decided which oneOf branches match
        ("ignore", {"oneOf": [EMPTY, {**EMPTY, "maxProperties": 0}]}, {"a": None}, "2 oneOf"),
        ("ignore", {**EMPTY, "oneOf": [{}, {"maxProperties": 0}]}, {"a": 1}, "2 oneOf"),
        (
            "ignore",
            {"allOf": [{"properties": {"b": {}}}], "oneOf": [{}, {"maxProperties": 0}]},
            {"a": 1},
            "2 oneOf",
        ),
        (
            "ignore",
            {
                "type": "object",
                "properties": {"x": {"oneOf": [EMPTY, {**EMPTY, "maxProperties": 0}]}},
            },
            {"x": {"a": None}},
            "2 oneOf",
        ),
        # ... the keywords beside properties
        ("ignore", {**EMPTY, "not": {"const": {}}}, {"a": 1}, "must not match"),
        ("ignore", {**EMPTY, "not": {"propertyNames": {"maxLength": 0}}}, {"a": 1}, "not match"),
        (
            "ignore",
            {"type": "object", "properties": {"b": {}}, "not": {"dependentRequired": {"a": ["b"]}}},
            {"a": 1},
            "must not match",
        ),
        # the one branch matching kept what another branch takes
        ("ignore", {"oneOf": [A_STRING, EMPTY]}, {"a": 1}, "also matches #/oneOf/0"),
        (
            None,
            {
                "oneOf": [
                    {"type": "object", "required": ["d"]},
                    {"properties": {"d": {"default": 1}}},
                ]
            },
            {},
            "also matches #/oneOf/0",
        ),
        # ... or an earlier anyOf branch would take it and convert a string
        (
            "ignore",
            {
                "anyOf": [
                    {
                        "type": "object",
                        "properties": {
                            "a": {"type": "string"},
                            "t": {"type": "string", "format": "date-time"},
                        },
                    },
                    {"type": "object", "properties": {"t": {"type": "string"}}},
                ]
            },
            {"a": 1, "t": "2024-01-01T00:00:00Z"},
            "option 1 (object) would take and change",
        ),
        # defaults are there when the keywords beside them judge
        (
            None,
            {"type": "object", "properties": {"d": {"default": 1}}, "maxProperties": 0},
            {},
            "at most 0",
        ),
        (
            None,
            {
                "type": "object",
                "properties": {},
                "not": {"required": ["a"]},
                "oneOf": [
                    {"type": "object", "properties": {"a": {"type": "null", "default": None}}}
                ],
            },
            {},
            "must not match",
        ),
    ],
)
def test_data_that_would_not_validate_again_is_refused(
    policy: Any, schema: dict[str, Any], data: Any, refused: str
) -> None:
    validator = EventValidator(extra_fields=policy)
    validator.register("x", schema)
    with pytest.raises(ValidationError) as info:
        validator.check("x", data)
    assert refused in info.value.errors[0].message


def test_a_union_of_classes_refuses_what_an_earlier_class_would_change() -> None:
    validator = EventValidator(extra_fields="ignore")
    validator.register("x", Holder)
    with pytest.raises(ValidationError, match="option 1 .* would take and change"):
        validator.check("x", {"v": {"a": 1}})  # Nothing keeps {}, WithDefault makes a="x"
    assert _validated_again(validator, {"v": {"a": "y"}}) == {"v": {"a": "y"}}
    assert _validated_again(validator, {"v": {}}) == {"v": {"a": "x"}}


def test_if_judges_the_object_without_its_ignored_keys() -> None:
    validator = EventValidator(extra_fields="ignore")
    validator.register(
        "x",
        {**EMPTY, "if": {"minProperties": 1}, "then": {"required": ["b"]}, "else": EMPTY},
    )
    assert _validated_again(validator, {"a": 1}) == {}  # "a" is dropped: else applies


def test_branches_told_apart_still_keep_their_own_keys() -> None:
    validator = EventValidator(extra_fields="ignore")
    box = {"type": "object", "properties": {"kind": {"const": "box"}, "size": {"type": "integer"}}}
    bag = {"type": "object", "properties": {"kind": {"const": "bag"}, "name": {"type": "string"}}}
    validator.register(
        "x", {"oneOf": [{**box, "required": ["kind"]}, {**bag, "required": ["kind"]}]}
    )
    data = {"kind": "box", "size": 2, "name": "n", "other": 1}
    assert _validated_again(validator, data) == {"kind": "box", "size": 2}
    assert _validated_again(validator, {"kind": "bag", "size": "big"}) == {"kind": "bag"}


DEFAULTS = st.sampled_from([None, 1, "a", "2024-01-01", "2024-01-01T00:00:00Z", [], {}])
JUDGES = st.sampled_from(
    [
        {},
        {"maxProperties": 1},
        {"minProperties": 1},
        {"not": {"required": ["a"]}},
        {"not": {"const": {}}},
        {"propertyNames": {"maxLength": 0}},
        {"dependentRequired": {"a": ["b"]}},
    ]
)


def _with_defaults(properties: dict[str, Any], defaults: list[Any]) -> dict[str, Any]:
    return {
        name: {**sub, "default": default} if isinstance(sub, dict) and default is not ... else sub
        for (name, sub), default in zip(properties.items(), defaults, strict=False)
    }


def _objects(inner: Any) -> Any:
    """Object schemas with defaults (some refused at registration) and judges beside."""
    return st.builds(
        lambda properties, defaults, required, closed, judge: {
            **_object(_with_defaults(properties, defaults), required, closed),
            **judge,
        },
        st.dictionaries(st.sampled_from(["a", "b", "c"]), inner, max_size=3),
        st.lists(st.just(...) | st.just(...) | DEFAULTS, min_size=3, max_size=3),
        st.lists(st.sampled_from(["a", "b", "c"]), max_size=2, unique=True),
        st.none() | st.booleans(),
        JUDGES,
    )


def _combined(inner: Any) -> Any:
    objects = _objects(inner)
    branches = st.lists(objects | inner, min_size=1, max_size=3)
    return st.one_of(
        objects,
        st.builds(lambda options: {"oneOf": options}, branches),
        st.builds(lambda options: {"anyOf": options}, branches),
        st.builds(lambda obj, options: {**obj, "oneOf": options}, objects, branches),
        st.builds(lambda obj, options: {**obj, "allOf": options}, objects, branches),
        st.builds(lambda obj, options: {**obj, "anyOf": options}, objects, branches),
        st.builds(lambda parts, options: {"allOf": parts, "oneOf": options}, branches, branches),
        st.builds(
            lambda obj, cond, then, other: {**obj, "if": cond, "then": then, "else": other},
            objects,
            inner,
            inner,
            inner,
        ),
        st.builds(lambda obj, schema: {**obj, "not": schema}, objects, inner),
        st.builds(lambda items: {"type": "array", "items": items}, inner),
    )


OBJECT_SCHEMAS = st.recursive(SCALAR_SCHEMAS, _combined, max_leaves=6)
#: mostly objects with the keys the schemas speak of, and others
OBJECTS = st.dictionaries(st.sampled_from(["a", "b", "c", "x"]), DATA, max_size=4) | DATA


@pytest.mark.parametrize("policy", ["ignore", None, "forbid"])
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schema=OBJECT_SCHEMAS, data=OBJECTS)
def test_validated_objects_validate_again_unchanged(policy: Any, schema: Any, data: Any) -> None:
    validator = EventValidator(extra_fields=policy)
    try:
        validator.register("x", schema)
    except ConfigurationError:
        return  # a default its schema refuses
    try:
        validator.check("x", data)
    except ValidationError:
        return
    _validated_again(validator, data)
