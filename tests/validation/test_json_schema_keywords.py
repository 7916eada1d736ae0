"""JSON Schema 2020-12 keywords: type keywords without ``type``, object and array keywords."""

from __future__ import annotations

from typing import Any

import pytest

from pepperpy.event import ConfigurationError, EventValidator, ValidationError

from .test_json_schema_semantics import _both_paths


def _verdicts(schema: Any, data: list[Any]) -> list[bool]:
    return [_both_paths(schema, item) is not ValidationError for item in data]


@pytest.mark.parametrize(
    ("schema", "valid", "invalid"),
    [
        ({"minLength": 2}, ["ab", 5, None, [1], {"a": 1}, True], ["a", ""]),
        ({"maxLength": 2, "pattern": "^a"}, ["a", "ab", 12, False], ["b", "abc"]),
        ({"maximum": 3}, [3, 2.5, "x", True, [9]], [3.5, 4]),
        ({"multipleOf": 2, "exclusiveMinimum": 0}, [2, 4.0, "7", None], [3, 0, -2]),
        ({"items": {"type": "integer"}}, [[1, 2], [], "x", {"a": "b"}], [["a"], [1, 2.5]]),
        ({"maxItems": 2, "uniqueItems": True}, [[1, 2], "abc", 1], [[1, 2, 3], [1, 1]]),
        ({"prefixItems": [{"type": "string"}]}, [["a", 1], [], 5], [[1]]),
        ({"additionalProperties": False}, [{}, 5, "x", [1]], [{"a": 1}]),
        ({"additionalProperties": {"type": "integer"}}, [{"a": 1}, [1], "x"], [{"a": "x"}]),
        ({"minLength": 2, "minimum": 5}, ["ab", 5, None, []], ["a", 4]),
        # format stays an annotation without type: nothing converted
        ({"format": "date-time", "minLength": 1}, ["x", 3], [""]),
        ({"anyOf": [{"minLength": 3}, {"type": "integer"}]}, ["abc", 1, 2.5], ["ab"]),
        ({"type": "array", "items": {"minimum": 0}}, [[0, "x", None]], [[-1], "x"]),
    ],
)
def test_keywords_of_a_type_apply_to_values_of_that_type(
    schema: Any, valid: list[Any], invalid: list[Any]
) -> None:
    assert _verdicts(schema, valid) == [True] * len(valid)
    assert _verdicts(schema, invalid) == [False] * len(invalid)


def test_properties_without_type_still_make_an_object_schema() -> None:
    # as before (a documented deviation), but the keywords inside now apply by type
    schema = {"properties": {"a": {"minimum": 1}, "b": {"maxLength": 1}}, "required": ["a"]}
    assert _verdicts(schema, [{"a": 1}, {"a": "x", "b": 5}, {"a": 2, "b": "y"}]) == [True] * 3
    assert _verdicts(schema, [5, "x", {"a": 0}, {"a": 1, "b": "yy"}, {}]) == [False] * 5


def test_keywords_without_type_report_their_own_problem() -> None:
    validator = EventValidator()
    validator.register("x", {"type": "object", "properties": {"name": {"minLength": 2}}})
    with pytest.raises(ValidationError) as info:
        validator.check("x", {"name": "a"})
    (problem,) = info.value.errors
    assert (problem.path, problem.message) == ("name", "must have length >= 2")


@pytest.mark.parametrize(
    ("schema", "keywords"),
    [
        ({"type": "integer", "minLength": 2}, "minLength"),
        ({"type": ["string", "null"], "minimum": 1, "items": {}}, "items, minimum"),
        ({"properties": {}, "maxLength": 1}, "maxLength"),
    ],
)
def test_keywords_a_type_excludes_are_refused(schema: Any, keywords: str) -> None:
    with pytest.raises(ConfigurationError, match="would never apply") as info:
        EventValidator().register("x", schema)
    assert f"keyword(s) {keywords} at #" in str(info.value)


@pytest.mark.parametrize(
    ("schema", "valid", "invalid"),
    [
        (
            {"maxProperties": 2},
            [{"foo": 1, "bar": 2}, {}, [1, 2, 3], "foobar"],
            [{"a": 1, "b": 2, "c": 3}],
        ),
        ({"minProperties": 1}, [{"foo": 1}, "", [], 5], [{}]),
        (
            {"type": "object", "properties": {"a": {}, "b": {}}, "minProperties": 1},
            [{"a": 1}],
            [{}, 1],
        ),
        ({"minProperties": 1, "maxProperties": 1}, [{"a": 1}], [{}, {"a": 1, "b": 2}]),
    ],
)
def test_min_and_max_properties(schema: Any, valid: list[Any], invalid: list[Any]) -> None:
    assert _verdicts(schema, valid) == [True] * len(valid)
    assert _verdicts(schema, invalid) == [False] * len(invalid)


F_O = {
    "properties": {"foo": {"type": "array", "maxItems": 3}, "bar": {"type": "array"}},
    "patternProperties": {"f.o": {"minItems": 2}},
    "additionalProperties": {"type": "integer"},
}
PREFIXED = {
    "type": "object",
    "patternProperties": {"^x-": {"type": "string"}},
    "required": ["x-id"],
    "additionalProperties": False,
}


@pytest.mark.parametrize(
    ("schema", "valid", "invalid"),
    [
        (
            {"patternProperties": {"f.*o": {"type": "integer"}}},
            [{"foo": 1}, {"foo": 1, "foooooo": 2}, ["foo"], "foo", 12],
            [{"foo": "bar", "fooooo": 2}, {"foo": "bar", "foooooo": "baz"}],
        ),
        (  # every matching pattern applies
            {"patternProperties": {"a*": {"type": "integer"}, "aaa*": {"maximum": 20}}},
            [{"a": 21}, {"aaaa": 18}, {"a": 21, "aaaa": 18}],
            [{"a": "bar"}, {"aaaa": 31}, {"aaa": "foo", "aaaa": 31}],
        ),
        (  # properties, patternProperties and additionalProperties together
            F_O,
            [{"foo": [1, 2]}, {"fxo": [1, 2]}, {"bar": []}, {"quux": 3}],
            [{"foo": [1, 2, 3, 4]}, {"foo": []}, {"fxo": []}, {"quux": "foo"}],
        ),
        (
            PREFIXED,
            [{"x-id": "a"}, {"x-id": "a", "x-b": "c"}],
            [{"x-id": 1}, {}, {"x-id": "a", "y": 1}],
        ),
        ({"type": "object", "patternProperties": {"^a": False}}, [{}], [{"ab": 1}]),
    ],
)
def test_pattern_properties(schema: Any, valid: list[Any], invalid: list[Any]) -> None:
    assert _verdicts(schema, valid) == [True] * len(valid)
    assert _verdicts(schema, invalid) == [False] * len(invalid)


def test_keys_a_pattern_declares_follow_no_extra_fields_policy() -> None:
    schema = {"type": "object", "properties": {"id": {}}, "patternProperties": {"^x-": {}}}
    validator = EventValidator(extra_fields="ignore")
    validator.register("x", schema)
    assert validator.check("x", {"id": 1, "x-a": [1], "b": 2})[0] == {"id": 1, "x-a": [1]}
    validator.register("y", {"allOf": [{"$ref": "#/$defs/t"}], "$defs": {"t": schema}})
    assert validator.check("y", {"id": 1, "x-a": [1], "b": 2})[0] == {"id": 1, "x-a": [1]}


@pytest.mark.parametrize(
    ("schema", "valid", "invalid"),
    [
        (
            {"dependentRequired": {"bar": ["foo"]}},
            [{}, {"foo": 1}, {"foo": 1, "bar": 2}, ["bar"], "foobar", 12],
            [{"bar": 2}],
        ),
        (
            {"dependentRequired": {"quux": ["foo", "bar"]}},
            [{"foo": 1, "bar": 2, "quux": 3}, {"foo": 1}],
            [{"quux": 1, "foo": 1}, {"quux": 1}],
        ),
        ({"dependentRequired": {"bar": []}}, [{"bar": 1}], []),
    ],
)
def test_dependent_required(schema: Any, valid: list[Any], invalid: list[Any]) -> None:
    assert _verdicts(schema, valid) == [True] * len(valid)
    assert _verdicts(schema, invalid) == [False] * len(invalid)


@pytest.mark.parametrize(
    ("schema", "valid", "invalid"),
    [
        (
            {"propertyNames": {"maxLength": 3}},
            [{"f": {}, "foo": {}}, {}, [1, 2, 3, 4], 12],
            [{"foo": {}, "foobar": {}}],
        ),
        ({"propertyNames": {"pattern": "^a+$"}}, [{"a": {}, "aa": {}}], [{"aaA": {}}]),
        ({"propertyNames": True}, [{"foo": 1}], []),
        ({"propertyNames": False}, [{}, 1], [{"foo": 1}]),
        ({"propertyNames": {"not": {"const": "id"}}}, [{"a": 1}], [{"id": 1}]),
    ],
)
def test_property_names(schema: Any, valid: list[Any], invalid: list[Any]) -> None:
    assert _verdicts(schema, valid) == [True] * len(valid)
    assert _verdicts(schema, invalid) == [False] * len(invalid)


ONE = {"const": 1}


@pytest.mark.parametrize(
    ("schema", "valid", "invalid"),
    [
        ({"contains": {"minimum": 5}}, [[3, 4, 5], [6], {}, "x"], [[2, 3, 4], []]),
        ({"contains": {"const": 5}}, [[3, 4, 5], [5, 5]], [[1, 2, 3]]),
        ({"contains": True}, [["foo"]], [[]]),
        ({"contains": False}, ["x"], [[], [1]]),
        ({"contains": ONE, "minContains": 2}, [[1, 1], [1, 2, 1]], [[1], [2]]),
        ({"contains": ONE, "maxContains": 1}, [[1], [1, 2]], [[1, 1], [2]]),
        ({"contains": ONE, "minContains": 0}, [[], [2]], []),
        ({"contains": ONE, "minContains": 0, "maxContains": 1}, [[], [1]], [[1, 1]]),
        (
            {"type": "array", "items": {"type": "integer"}, "contains": {"minimum": 5}},
            [[1, 6]],
            [[1], ["a", 6], "x"],
        ),
    ],
)
def test_contains_with_min_and_max_contains(
    schema: Any, valid: list[Any], invalid: list[Any]
) -> None:
    assert _verdicts(schema, valid) == [True] * len(valid)
    assert _verdicts(schema, invalid) == [False] * len(invalid)


def _problem(schema: Any, data: Any) -> tuple[str, str]:
    validator = EventValidator()
    validator.register("x", schema)
    with pytest.raises(ValidationError) as info:
        validator.check("x", data)
    (problem,) = info.value.errors
    return problem.path, problem.message


def test_new_keywords_say_what_is_wrong_and_where() -> None:
    assert _problem({"dependentRequired": {"bar": ["foo"]}}, {"bar": 1}) == (
        "foo",
        "field required by 'bar'",
    )
    assert _problem({"propertyNames": {"maxLength": 3}}, {"long": 1}) == (
        "long",
        "property name must have length <= 3",
    )
    assert _problem(
        {"type": "object", "properties": {"t": {"maxProperties": 1}}}, {"t": {"a": 1, "b": 2}}
    ) == (
        "t",
        "must have at most 1 properties",
    )
    assert _problem({"contains": ONE, "minContains": 2}, [1, 2]) == (
        "",
        "1 items match the schema at #/contains",
    )


@pytest.mark.parametrize(
    ("schema", "where"),
    [
        ({"not": 1}, "#/not"),
        ({"if": "x", "then": {}}, "#/if"),
        ({"if": {}, "else": []}, "#/else"),
        ({"minProperties": -1}, "#/minProperties"),
        ({"maxProperties": 1.5}, "#/maxProperties"),
        ({"patternProperties": {"a": 1}}, "#/patternProperties"),
        ({"patternProperties": {"(": {}}}, "#/patternProperties/("),
        ({"propertyNames": []}, "#/propertyNames"),
        ({"dependentRequired": {"a": "b"}}, "#/dependentRequired"),
        ({"dependentRequired": {"a": ["b", "b"]}}, "#/dependentRequired"),
        ({"contains": 3}, "#/contains"),
        ({"contains": {}, "minContains": "1"}, "#/minContains"),
        ({"contains": {}, "maxContains": -2}, "#/maxContains"),
        ({"type": "array", "maxContains": 2}, "#/maxContains"),
        ({"then": {}}, "#/then"),
        ({"type": "object", "properties": {"a": {"not": None}}}, "#/properties/a/not"),
    ],
)
def test_malformed_new_keywords_are_refused_at_registration(schema: Any, where: str) -> None:
    keyword = where.split("/")[-1] if "patternProperties/" not in where else "patternProperties"
    with pytest.raises(ConfigurationError) as info:
        EventValidator().register("x", schema)
    assert f"'{keyword}'" in str(info.value)
    assert where in str(info.value)


@pytest.mark.parametrize(
    ("schema", "keywords"),
    [
        ({"type": "string", "minProperties": 1}, "minProperties"),
        ({"type": "object", "contains": {}}, "contains"),
    ],
)
def test_new_keywords_a_type_excludes_are_refused(schema: Any, keywords: str) -> None:
    with pytest.raises(ConfigurationError, match="would never apply") as info:
        EventValidator().register("x", schema)
    assert keywords in str(info.value)


@pytest.mark.parametrize(
    ("schema", "valid", "invalid", "converts"),
    [
        (
            {"type": "string", "format": "date-time", "maxLength": 20, "pattern": "Z$"},
            ["2024-01-01T00:00:00Z"],
            ["2024-01-01T00:00:00+00:00", "2024-01-01T00:00:00.5Z", "nope"],
            False,  # the event's JSON would write +00:00, which they refuse: kept as given
        ),
        (
            {"type": "string", "format": "date", "pattern": "^2024-"},
            ["2024-02-03"],
            ["2023-02-03"],
            True,
        ),
        ({"type": "string", "format": "time", "minLength": 9}, ["12:00:00Z"], ["1:00:00Z"], False),
        (
            {"type": "string", "format": "uuid", "pattern": "^[0-9a-f-]+$"},
            ["12345678-1234-5678-1234-567812345678"],
            ["12345678-1234-5678-1234-56781234567A", "x"],
            True,
        ),
    ],
)
def test_length_and_pattern_apply_beside_a_converting_format(
    schema: Any, valid: list[Any], invalid: list[Any], converts: bool
) -> None:
    # they judge the string given (they used to be ignored silently)
    assert _verdicts(schema, valid) == [True] * len(valid)
    assert _verdicts(schema, invalid) == [False] * len(invalid)
    validator = EventValidator()
    validator.register("x", {"type": "object", "properties": {"v": schema}, "required": ["v"]})
    converted = validator.check("x", {"v": valid[0]})[0]["v"]
    assert isinstance(converted, str) is not converts
    assert validator.check("x", {"v": converted})[0]["v"] == converted
