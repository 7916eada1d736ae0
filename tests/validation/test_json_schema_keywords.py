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
