"""Malformed JSON Schema keywords, JSON Schema equality, and datetime text on both paths."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import uuid
from typing import Annotated, Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pepperpy.event import ConfigurationError, EventValidator, ValidationError


@pytest.mark.parametrize(
    ("schema", "where"),
    [
        ({"type": "integer", "minimum": "5"}, "#/minimum"),
        ({"type": "integer", "maximum": True}, "#/maximum"),
        ({"type": "number", "minimum": math.nan}, "#/minimum"),
        ({"type": "number", "exclusiveMaximum": math.inf}, "#/exclusiveMaximum"),
        ({"type": "number", "exclusiveMinimum": True}, "#/exclusiveMinimum"),
        ({"type": "integer", "multipleOf": 0}, "#/multipleOf"),
        ({"type": "number", "multipleOf": -0.5}, "#/multipleOf"),
        ({"type": "string", "minLength": -1}, "#/minLength"),
        ({"type": "string", "maxLength": "3"}, "#/maxLength"),
        ({"type": "array", "minItems": 2.5}, "#/minItems"),
        ({"type": "array", "maxItems": None}, "#/maxItems"),
        ({"type": "array", "uniqueItems": "yes"}, "#/uniqueItems"),
        ({"type": "array", "items": [{"type": "string"}]}, "#/items"),
        ({"type": "array", "prefixItems": []}, "#/prefixItems"),
        ({"type": "object", "required": "name"}, "#/required"),
        ({"type": "object", "required": ["a", "a"]}, "#/required"),
        ({"type": "object", "required": [1]}, "#/required"),
        ({"type": "object", "properties": []}, "#/properties"),
        ({"type": "object", "properties": {"a": "string"}}, "#/properties"),
        ({"type": "object", "additionalProperties": "no"}, "#/additionalProperties"),
        ({"type": 5}, "#/type"),
        ({"type": []}, "#/type"),
        ({"type": ["string", "string"]}, "#/type"),
        ({"enum": "abc"}, "#/enum"),
        ({"anyOf": [{"type": "string"}, 3]}, "#/anyOf"),
        ({"allOf": []}, "#/allOf"),
        ({"type": "string", "allOf": {"type": "string"}}, "#/allOf"),
        ({"type": "string", "format": ["date"]}, "#/format"),
        ({"type": "string", "pattern": "("}, "#/pattern"),
        ({"type": "string", "pattern": 5}, "#/pattern"),
        (
            {"type": "object", "properties": {"a/b": {"type": "integer", "minimum": "1"}}},
            "#/properties/a~1b/minimum",
        ),
        ({"type": "array", "items": {"type": "string", "maxLength": -2}}, "#/items/maxLength"),
    ],
)
def test_malformed_keyword_values_are_refused_at_registration(
    schema: dict[str, Any], where: str
) -> None:
    keyword = where.rsplit("/", 1)[1]
    with pytest.raises(ConfigurationError) as info:
        EventValidator().register("x", schema)
    assert f"'{keyword}'" in str(info.value)
    assert where in str(info.value)


async def test_well_formed_edge_values_are_accepted() -> None:
    validator = EventValidator()
    validator.register("a", {"type": "array", "minItems": 2.0, "maxItems": 0x7FFF})
    validator.register("n", {"type": "number", "minimum": 0, "multipleOf": 0.5})
    validator.register("o", {"type": "object", "required": [], "properties": {"a": True}})
    validator.register("t", {"type": ["string", "null"], "format": "email"})
    assert list((await validator.validate("a", [1, 2])).data) == [1, 2]
    assert (await validator.validate("n", 1.5)).data == 1.5
    with pytest.raises(ValidationError):
        await validator.validate("a", [1])
    with pytest.raises(ValidationError):
        await validator.validate("n", 1.25)


_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.sampled_from([0.0, 2.5, -1.5, math.nan, math.inf, 10**400]),
    st.sampled_from(["", "5", "name", "(", "^a", "string", "integer", "date-time"]),
    st.lists(st.sampled_from(["a", "a", "string", 1]), max_size=3),
    st.dictionaries(st.sampled_from(["a", "type"]), st.sampled_from([True, "x", {}]), max_size=2),
)
_KEYWORDS = st.sampled_from(
    [
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "multipleOf",
        "minLength",
        "maxLength",
        "pattern",
        "format",
        "minItems",
        "maxItems",
        "uniqueItems",
        "items",
        "prefixItems",
        "required",
        "properties",
        "additionalProperties",
        "enum",
        "anyOf",
        "allOf",
        "oneOf",
        "not",
        "if",
        "then",
        "else",
        "minProperties",
        "maxProperties",
        "patternProperties",
        "propertyNames",
        "dependentRequired",
        "contains",
        "minContains",
        "maxContains",
    ]
)
_TYPES = st.sampled_from(["integer", "number", "string", "array", "object", ["string", "array"]])
_DATA = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.floats(-5, 5),
    st.text(max_size=3),
    st.lists(st.integers(0, 2), max_size=3),
    st.dictionaries(st.sampled_from(["a", "name"]), st.integers(), max_size=2),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_TYPES, st.dictionaries(_KEYWORDS, _VALUES, max_size=3), _DATA)
async def test_a_registered_schema_raises_only_validation_error(
    kind: Any, keywords: dict[str, Any], data: Any
) -> None:
    validator = EventValidator()
    try:
        validator.register("x", {"type": kind, **keywords})
    except ConfigurationError:
        return
    try:
        await validator.validate("x", data)
    except ValidationError:
        pass


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(_KEYWORDS, _VALUES, max_size=3), _DATA)
async def test_keywords_without_type_raise_only_validation_error(
    keywords: dict[str, Any], data: Any
) -> None:
    validator = EventValidator()
    try:
        validator.register("x", keywords)
    except ConfigurationError:
        return
    try:
        await validator.validate("x", data)
    except ValidationError:
        pass


@pytest.mark.parametrize(
    ("data", "ok"), [(0.0, True), (0, True), (1.5, False), (7, False), (-(2**63), False)]
)
async def test_multiple_of_a_number_too_large_for_a_float_is_decided_exactly(
    data: Any, ok: bool
) -> None:
    # value / step overflowed when one side did not fit a float (found by the property
    # test above): the check falls back to exact fractions
    validator = EventValidator()
    validator.register("x", {"type": "number", "multipleOf": 10**400})
    if ok:
        await validator.validate("x", data)
    else:
        with pytest.raises(ValidationError, match="multiple"):
            await validator.validate("x", data)


UNIQUE = {"type": "array", "uniqueItems": True}


@pytest.mark.parametrize(
    "items",
    [
        [{"a": 1, "b": 2}, {"b": 2, "a": 1}],
        [1, 1.0],
        [0, -0.0],
        [[1, {"x": 2}], [1.0, {"x": 2.0}]],
        ["a", "a"],
        [None, None],
    ],
)
async def test_unique_items_uses_json_schema_equality_for_duplicates(items: list[Any]) -> None:
    validator = EventValidator()
    validator.register("x", UNIQUE)
    with pytest.raises(ValidationError, match="unique"):
        await validator.validate("x", items)


@pytest.mark.parametrize(
    "items",
    [
        [True, 1],
        [False, 0, 0.5],
        [{"a": 1}, {"a": True}],
        [[1, 2], [2, 1]],
        ["1", 1],
        [{"a": 1}, {"a": 1, "b": 1}],
        [None, False, 0, "", [], {}],
    ],
)
async def test_unique_items_keeps_values_json_schema_calls_distinct(items: list[Any]) -> None:
    validator = EventValidator()
    validator.register("x", UNIQUE)
    assert list((await validator.validate("x", items)).data) == items


@dataclasses.dataclass
class At:
    at: dt.datetime
    day: dt.date | None = None
    time: dt.time | None = None


@pytest.mark.parametrize(
    "data",
    [
        {"at": "2024-05-01"},
        {"at": "2024-W18-3"},
        {"at": "20240501T100000"},
        {"at": "2024-05-01T10:00"},
        {"at": "2024-05-01T10:00:00,5"},
        {"at": "2024-05-01T10:00:00+01"},
        {"at": "2024-05-01T10:00:00Z", "day": "2024-W18-3"},
        {"at": "2024-05-01T10:00:00Z", "time": "10:00"},
        {"at": "2024-05-01T10:00:00Z", "time": "T10:00:00"},
    ],
)
async def test_datetime_text_msgspec_refuses_is_refused(data: dict[str, Any]) -> None:
    validator = EventValidator()
    validator.register("x", At)
    with pytest.raises(ValidationError):
        await validator.validate("x", data)
    walk = validator._latest["x"]
    with pytest.raises(ValidationError):
        walk.explain(data)


_TEMPORAL = ["2024-05-01", "2024-05-01T10:00:00", "10:00:00.5", "2024-05-01T10:00:00.123+05:30"]


@st.composite
def _near_iso(draw: st.DrawFn) -> str:
    """ISO-looking text with a few characters dropped, added or swapped."""
    text = list(draw(st.sampled_from(_TEMPORAL)))
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(text)))
        char = draw(st.sampled_from("0123456789-:T tZz+.,W"))
        action = draw(st.sampled_from(["drop", "add", "swap"]))
        if action == "add":
            text.insert(at, char)
        elif text:
            at = min(at, len(text) - 1)
            if action == "drop":
                del text[at]
            else:
                text[at] = char
    return "".join(text)


@settings(max_examples=500, deadline=None)
@given(
    st.sampled_from(
        [
            dt.datetime,
            dt.date,
            dt.time,
            Annotated[dt.datetime, msgspec.Meta(tz=True)],
            Annotated[dt.time, msgspec.Meta(tz=False)],
        ]
    ),
    _near_iso(),
)
def test_walk_and_fast_path_read_temporal_text_alike(annotation: Any, text: str) -> None:
    validator = EventValidator()
    validator.register("x", dataclasses.make_dataclass("T", [("v", annotation)]))
    compiled = validator._latest["x"]
    assert compiled.fast is not None
    try:
        fast: Any = msgspec.convert({"v": text}, compiled.fast, strict=True).v
    except msgspec.ValidationError:
        fast = None
    try:
        walked: Any = compiled.explain({"v": text})["v"]
    except ValidationError:
        walked = None
    assert walked == fast


@pytest.mark.parametrize(
    "text",
    [
        "2eb8aa08-aa98-11ea-b4aa-73b441d16380",
        "2EB8AA08-AA98-11EA-B4AA-73B441D16380",
        "2eb8aa08aa9811eab4aa73b441d16380",
        "{2eb8aa08-aa98-11ea-b4aa-73b441d16380}",
        "urn:uuid:2eb8aa08-aa98-11ea-b4aa-73b441d16380",
        "2eb8aa08-aa98-11ea-b4aa-73b441d1638",
    ],
)
def test_walk_and_fast_path_read_uuid_text_alike(text: str) -> None:
    validator = EventValidator()
    validator.register("x", dataclasses.make_dataclass("U", [("v", uuid.UUID)]))
    compiled = validator._latest["x"]
    assert compiled.fast is not None
    try:
        fast: Any = msgspec.convert({"v": text}, compiled.fast, strict=True).v
    except msgspec.ValidationError:
        fast = None
    try:
        walked: Any = compiled.explain({"v": text})["v"]
    except ValidationError:
        walked = None
    assert walked == fast
