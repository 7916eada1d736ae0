"""Malformed JSON Schema keywords, JSON Schema equality, and datetime text on both paths."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import uuid
from typing import Annotated, Any

import msgspec
import pytest
from hypothesis import HealthCheck, assume, given, settings
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


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.none(), _TYPES), st.dictionaries(_KEYWORDS, _VALUES, max_size=3))
def test_keyword_values_are_accepted_or_refused_naming_where(
    kind: Any, keywords: dict[str, Any]
) -> None:
    schema = keywords if kind is None else {"type": kind, **keywords}
    try:
        EventValidator().register("x", schema)
    except ConfigurationError as exc:
        assert "#" in str(exc)  # the JSON Pointer of what is refused


# well-formed values of each keyword, so that (nearly) every schema drawn registers
_NAMES = st.sampled_from(["a", "name"])
_SUBSCHEMAS = st.sampled_from(
    [True, {}, {"type": "integer"}, {"type": "string"}, {"minimum": 0}, {"maxLength": 1}]
)
_BOUND = st.one_of(st.integers(-3, 3), st.sampled_from([2.5, -1.5, 10**400]))
_COUNT = st.integers(0, 3)
_WELL_FORMED: dict[str, st.SearchStrategy[Any]] = {
    "minimum": _BOUND,
    "maximum": _BOUND,
    "exclusiveMinimum": _BOUND,
    "exclusiveMaximum": _BOUND,
    "multipleOf": st.sampled_from([1, 2, 0.5, 10**400]),
    "minLength": _COUNT,
    "maxLength": _COUNT,
    "pattern": st.sampled_from(["", "^a", "5", "a|b"]),
    "format": st.sampled_from(["date-time", "date", "time", "uuid", "email"]),
    "minItems": _COUNT,
    "maxItems": _COUNT,
    "uniqueItems": st.booleans(),
    "items": _SUBSCHEMAS,
    "prefixItems": st.lists(_SUBSCHEMAS, min_size=1, max_size=2),
    "required": st.lists(_NAMES, unique=True, max_size=2),
    "properties": st.dictionaries(_NAMES, _SUBSCHEMAS, max_size=2),
    "additionalProperties": st.one_of(st.booleans(), _SUBSCHEMAS),
    "enum": st.lists(st.sampled_from([None, False, 0, 1.5, "", "a", [1], {"a": 1}]), min_size=1),
    "anyOf": st.lists(_SUBSCHEMAS, min_size=1, max_size=2),
    "allOf": st.lists(_SUBSCHEMAS, min_size=1, max_size=2),
    "oneOf": st.lists(_SUBSCHEMAS, min_size=1, max_size=2),
    "not": _SUBSCHEMAS,
    "if": _SUBSCHEMAS,
    "then": _SUBSCHEMAS,
    "else": _SUBSCHEMAS,
    "minProperties": _COUNT,
    "maxProperties": _COUNT,
    "patternProperties": st.dictionaries(st.sampled_from(["^a", "e$"]), _SUBSCHEMAS, max_size=2),
    "propertyNames": st.sampled_from([True, {"maxLength": 1}, {"pattern": "^a"}]),
    "dependentRequired": st.dictionaries(_NAMES, st.lists(_NAMES, unique=True), max_size=2),
    "contains": _SUBSCHEMAS,
    "minContains": _COUNT,
    "maxContains": _COUNT,
}
#: keywords refused without their partner (they would have no effect)
_PARTNERS = {"then": "if", "else": "if", "minContains": "contains", "maxContains": "contains"}
_FAMILY = {"integer": "number", "number": "number", "string": "string", "array": "array"}
_FAMILY_KEYWORDS = {
    "number": ["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"],
    "string": ["minLength", "maxLength", "pattern", "format"],
    "array": ["items", "prefixItems", "minItems", "maxItems", "uniqueItems", "contains"],
    "object": [
        "properties",
        "required",
        "additionalProperties",
        "patternProperties",
        "minProperties",
        "maxProperties",
        "propertyNames",
        "dependentRequired",
    ],
}
_ANY_VALUE_KEYWORDS = ["enum", "anyOf", "allOf", "oneOf", "not", "if", "then", "else"]


@st.composite
def _well_formed_schema(draw: st.DrawFn, typed: bool) -> dict[str, Any]:
    """A schema of well-formed keywords; with ``typed``, only keywords its type allows."""
    if typed:
        kind = draw(_TYPES)
        families = [_FAMILY.get(name, name) for name in ([kind] if isinstance(kind, str) else kind)]
        pool = [k for family in families for k in _FAMILY_KEYWORDS[family]]
        if "array" in families:
            pool += ["minContains", "maxContains"]
        schema: dict[str, Any] = {"type": kind}
    else:
        pool = list(_WELL_FORMED)
        schema = {}
    names = draw(st.lists(st.sampled_from(pool + _ANY_VALUE_KEYWORDS), unique=True, max_size=3))
    for name in names:
        schema[name] = draw(_WELL_FORMED[name])
        partner = _PARTNERS.get(name)
        if partner is not None and partner not in schema:
            schema[partner] = draw(_WELL_FORMED[partner])
    return schema


async def _validates_only_with_validation_error(schema: dict[str, Any], data: Any) -> None:
    validator = EventValidator()
    try:
        validator.register("x", schema)
    except ConfigurationError:
        assume(False)  # a combination the validator refuses (rare): nothing to validate
    try:
        first = (await validator.validate("x", data)).data
    except ValidationError as exc:
        assert exc.errors  # refused data: every problem listed
        return
    assert (await validator.validate("x", first)).data == first  # validates again


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_well_formed_schema(typed=True), _DATA)
async def test_a_registered_schema_raises_only_validation_error(
    schema: dict[str, Any], data: Any
) -> None:
    await _validates_only_with_validation_error(schema, data)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_well_formed_schema(typed=False), _DATA)
async def test_keywords_without_type_raise_only_validation_error(
    schema: dict[str, Any], data: Any
) -> None:
    await _validates_only_with_validation_error(schema, data)


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


class _Unshowable:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


@pytest.mark.parametrize("schema", ["dataclass", "json"])
async def test_a_value_whose_repr_raises_is_refused_as_bad_data(schema: str) -> None:
    # describe() let the object's RuntimeError out of validate() and check()
    kind: Any = (
        dataclasses.make_dataclass("Named", [("name", str)])
        if schema == "dataclass"
        else {"type": "object", "properties": {"name": {"type": "string"}}}
    )
    validator = EventValidator()
    validator.register("t", kind)
    with pytest.raises(ValidationError) as caught:
        await validator.validate("t", {"name": _Unshowable()})
    assert caught.value.errors[0].path == "name"
    assert "repr raised RuntimeError" in caught.value.errors[0].actual
    with pytest.raises(ValidationError):
        validator.check("t", {"name": _Unshowable()})


@pytest.mark.parametrize("value", ["Infinity", "-inf", "NaN", "sNaN", float("inf")])
@pytest.mark.parametrize("optional", [False, True])
async def test_check_refuses_a_decimal_that_is_not_finite_as_validate_does(
    value: Any, optional: bool
) -> None:
    # msgspec's fast path took "NaN" and "Infinity" for a Decimal: check() returned
    # Decimal('NaN') where validate() refused it
    import dataclasses
    from decimal import Decimal

    annotation: Any = Decimal | None if optional else Decimal
    validator = EventValidator()
    validator.register("t", dataclasses.make_dataclass("Price", [("x", annotation)]))
    with pytest.raises(ValidationError) as caught:
        validator.check("t", {"x": value})
    assert [p.message for p in caught.value.errors] == ["expected a finite number"]
    with pytest.raises(ValidationError):
        await validator.validate("t", {"x": value})
    assert validator.check("t", {"x": "1.5"})[0] == {"x": Decimal("1.5")}
