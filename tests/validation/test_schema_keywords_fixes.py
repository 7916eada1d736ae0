"""JSON Schema keywords that once read the wrong values or were refused without a word."""

from __future__ import annotations

import dataclasses
import re
from typing import Any, TypedDict

import pydantic
import pytest

from pepperpy.event import ConfigurationError, Event, EventValidator, ValidationError
from pepperpy.event._errors import SerializationError
from pepperpy.event.validation._nodes import ObjectNode

from .test_json_schema_semantics import _both_paths

STRING = {"type": "string"}


def _problems(schema: Any, data: Any, extra: Any = "forbid") -> list[tuple[str, str]]:
    validator = EventValidator(extra_fields=extra)
    validator.register("t.x", schema)
    with pytest.raises(ValidationError) as info:
        validator.check("t.x", data)
    return [(p.path, p.message) for p in info.value.errors]


# -- min/maxProperties and propertyNames beside contains ---------------------------------


@pytest.mark.parametrize(
    ("schema", "valid", "invalid"),
    [
        ({"maxProperties": 1, "contains": STRING}, [{}, {"a": 1}, ["s"]], [{"a": 1, "b": 2}]),
        (
            {
                "type": ["object", "array"],
                "additionalProperties": True,
                "maxProperties": 1,
                "contains": STRING,
            },
            [{"a": 1}, ["s"]],
            [{"a": 1, "b": 2}, [1]],
        ),
        ({"maxProperties": 5, "contains": {}}, [{}, {"a": 1}], [[]]),
        ({"minProperties": 1, "contains": {}, "minContains": 0}, [{"a": 1}, []], [{}]),
        (
            {"minProperties": 2, "contains": STRING, "maxContains": 1},
            [{"a": 1, "b": 2}, ["s", 1]],
            [{"a": 1}, ["s", "t"]],
        ),
    ],
)
def test_property_counts_beside_contains_keep_their_own_bounds(
    schema: Any, valid: list[Any], invalid: list[Any]
) -> None:
    assert [_both_paths(schema, item) is ValidationError for item in valid] == [False] * len(valid)
    assert [_both_paths(schema, item) is ValidationError for item in invalid] == [True] * len(
        invalid
    )


def test_property_names_beside_contains_name_their_own_pointer() -> None:
    schema = {"propertyNames": {"not": {"const": "a"}}, "contains": STRING}
    assert _problems(schema, {"a": 1}) == [
        ("a", "property name must not match the schema at #/propertyNames/not")
    ]
    with pytest.raises(ConfigurationError, match="#/propertyNames/minimum"):
        EventValidator().register("t.x", {"propertyNames": {"minimum": "5"}, "contains": {}})


def test_contains_beside_property_names_keeps_its_own_pointer() -> None:
    schema = {"propertyNames": {"maxLength": 3}, "contains": STRING}
    assert _problems(schema, [1]) == [("", "0 items match the schema at #/contains")]


# -- patterns: each runs once per value, after the length bounds ---------------------------


class _Counting:
    """A compiled regular expression that counts its searches."""

    def __init__(self, regex: re.Pattern[str]) -> None:
        self.regex, self.pattern, self.searched = regex, regex.pattern, []

    def search(self, text: str) -> Any:
        self.searched.append(text)
        return self.regex.search(text)


def _walk_node(schema: Any, extra: Any) -> tuple[EventValidator, Any]:
    validator = EventValidator(extra_fields=extra)
    validator.register("t.x", schema)
    return validator, validator._latest["t.x"].node


@pytest.mark.parametrize("extra", ["forbid", "allow"])
def test_a_key_is_searched_once_per_pattern(extra: Any) -> None:
    schema = {"type": "object", "patternProperties": {"^a": {"type": "integer"}, "b$": {}}}
    validator, node = _walk_node(schema, extra)
    assert isinstance(node, ObjectNode)
    counters = [_Counting(regex) for regex, _ in node.patterns]
    node.patterns = tuple(
        (counter, sub) for counter, (_, sub) in zip(counters, node.patterns, strict=True)
    )
    assert validator.check("t.x", {"ab": 1})[0] == {"ab": 1}
    with pytest.raises(ValidationError):
        validator.check("t.x", {"ab": "x"})
    assert [c.searched for c in counters] == [["ab", "ab"], ["ab", "ab"]]  # two calls


def test_max_length_refuses_before_the_pattern_runs() -> None:
    schema = {"type": "object", "properties": {"a": {"maxLength": 3, "pattern": "^(a+)+$"}}}
    validator, node = _walk_node(schema, "allow")  # the walk alone
    text = node.fields["a"].node.nodes["string"]
    counter = _Counting(text.regex)
    text.regex = counter
    assert _problems_of(validator, {"a": "a" * 50 + "!"}) == [("a", "must have length <= 3")]
    assert counter.searched == []
    assert validator.check("t.x", {"a": "aa"})[0] == {"a": "aa"}
    assert counter.searched == ["aa"]


def _problems_of(validator: EventValidator, data: Any) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as info:
        validator.check("t.x", data)
    return [(p.path, p.message) for p in info.value.errors]


# -- type: integer and integral floats (a documented deviation) ---------------------------


@pytest.mark.parametrize(
    ("schema", "value"),
    [
        ({"type": "integer"}, 1.0),
        ({"type": "integer"}, -0.0),
        ({"type": "integer", "multipleOf": 2}, 6.0),
    ],
)
@pytest.mark.parametrize("extra", ["forbid", "allow"])
def test_type_integer_refuses_integral_floats_unless_coercing(
    schema: Any, value: float, extra: Any
) -> None:
    wrapped = {"type": "object", "properties": {"a": schema}}
    assert _problems(wrapped, {"a": value}, extra) == [("a", "wrong type")]
    validator = EventValidator(extra_fields=extra, coerce=True)
    validator.register("t.x", wrapped)
    (data, _) = validator.check("t.x", {"a": value})
    assert data == {"a": int(value)}
    assert type(data["a"]) is int


@pytest.mark.parametrize(
    ("schema", "value", "valid"),
    [
        ({"enum": [1]}, 1.0, True),
        ({"const": 1}, 1.0, True),
        ({"enum": [1]}, True, False),
        ({"type": "array", "uniqueItems": True}, [1, 1.0], False),
    ],
)
def test_enum_const_and_unique_items_use_json_equality(
    schema: Any, value: Any, valid: bool
) -> None:
    result = _both_paths(schema, value)
    assert (result is not ValidationError) is valid
    if valid:
        assert result == value
        assert type(result) is type(value)  # kept as given


# -- required keys that additionalProperties: false forbids --------------------------------


def test_a_required_key_no_schema_declares_is_refused_with_a_clear_message() -> None:
    validator = EventValidator()
    schema = {"type": "object", "required": ["a", "b"], "additionalProperties": False}
    with pytest.raises(ConfigurationError) as info:
        validator.register("t.x", schema)
    assert str(info.value).startswith(
        "JSON Schema at # requires 'a', 'b', which additionalProperties: false forbids"
    )
    assert "t.x" not in validator


@pytest.mark.parametrize(
    "part",
    [
        {"allOf": [{"properties": {"a": {"type": "integer"}}}]},
        {"$ref": "#/$defs/base", "$defs": {"base": {"properties": {"a": {"type": "integer"}}}}},
        {"anyOf": [{"properties": {"a": {"type": "integer"}}}, {"required": ["a"]}]},
        {"if": {"required": ["z"]}, "then": {"properties": {"a": {"type": "integer"}}}},
        {"allOf": [{"patternProperties": {"^a$": {"type": "integer"}}}]},
    ],
)
@pytest.mark.parametrize("extra", ["forbid", "allow"])
def test_a_required_key_a_part_declares_registers(part: Any, extra: Any) -> None:
    schema = {"type": "object", "required": ["a"], "additionalProperties": False, **part}
    validator = EventValidator(extra_fields=extra)
    validator.register("t.x", schema)
    assert validator.check("t.x", {"a": 1}) == ({"a": 1}, 1)
    assert _problems(schema, {}, extra) == [("a", "field required")]
    assert _problems(schema, {"a": 1, "b": 2}, extra) == [("b", "unexpected field")]


def test_a_required_key_an_allof_part_types_is_checked_by_it() -> None:
    schema = {
        "type": "object",
        "required": ["a"],
        "additionalProperties": False,
        "allOf": [{"properties": {"a": {"type": "integer"}}}],
    }
    assert _problems(schema, {"a": "x"}) == [("a", "wrong type")]


# -- check() and validate() agree on deep data ---------------------------------------------


def _nested_lists(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


@dataclasses.dataclass
class _AnyField:
    a: Any


class _ListField(TypedDict):
    a: list[Any]


class _Model(pydantic.BaseModel):
    a: Any


SCHEMA_KINDS: list[tuple[str, Any, Any]] = [
    ("json-allow", {"properties": {"a": {}}}, "allow"),
    ("json-forbid", {"properties": {"a": {}}}, "forbid"),
    ("json-array", {"type": "object", "properties": {"a": {"type": "array"}}}, "forbid"),
    (
        "json-ref",
        {
            "type": "object",
            "properties": {"a": {"$ref": "#/$defs/l"}},
            "$defs": {
                "l": {
                    "anyOf": [
                        {"type": "integer"},
                        {"type": "array", "items": {"$ref": "#/$defs/l"}},
                    ]
                }
            },
        },
        "forbid",
    ),
    ("dataclass", _AnyField, "forbid"),
    ("typeddict", _ListField, "ignore"),
    ("pydantic", _Model, "forbid"),
    ("unknown", None, "forbid"),
]


async def _verdicts_at(schema: Any, extra: Any, data: Any) -> tuple[bool, bool, bool]:
    validator = EventValidator(extra_fields=extra, unknown_types="pass")
    if schema is not None:
        validator.register("t.x", schema)
    try:
        validator.check("t.x", data)
        checked = True
    except ValidationError:
        checked = False
    try:
        await validator.validate("t.x", data)
        validated = True
    except ValidationError:
        validated = False
    try:
        Event("t.x", data)
        as_event = True
    except SerializationError:
        as_event = False
    return checked, validated, as_event


@pytest.mark.parametrize(
    ("kind", "schema", "extra"), SCHEMA_KINDS, ids=[k[0] for k in SCHEMA_KINDS]
)
@pytest.mark.parametrize("depth", [100, 252, 253, 600, 5000])
async def test_check_and_validate_agree_on_deep_data(
    kind: str, schema: Any, extra: Any, depth: int
) -> None:
    checked, validated, as_event = await _verdicts_at(schema, extra, {"a": _nested_lists(depth)})
    assert checked == validated, f"check() says {checked}, validate() says {validated}"
    if validated:  # what the validator accepts, an Event holds
        assert as_event
    if depth > 252:  # deeper than event data may nest: the object and 253 lists
        assert not validated


def test_a_schema_that_bounds_its_depth_is_not_measured() -> None:
    validator = EventValidator(extra_fields="forbid")  # kept extras could nest at any depth
    validator.register(
        "t.x",
        {"type": "object", "properties": {"a": {"type": "array", "items": {"type": "integer"}}}},
    )
    assert validator._latest["t.x"].unbounded is False
    validator.register("t.y", {"properties": {"a": {}}})
    assert validator._latest["t.y"].unbounded is True


def test_check_refuses_what_validate_refuses_for_an_unknown_type_let_through() -> None:
    validator = EventValidator(unknown_types="pass")
    with pytest.raises(ValidationError):
        validator.check("t.unknown", {"a": {1, 2}})
    assert validator.check("t.unknown", {"a": [1]}) == ({"a": [1]}, 1)
