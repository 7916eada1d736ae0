"""JSON Schema keywords that once read the wrong values or were refused without a word."""

from __future__ import annotations

from typing import Any

import pytest

from pepperpy.event import ConfigurationError, EventValidator, ValidationError

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
