"""``$ref`` cycles that never descend into the value are refused at registration.

They once registered, and then every validation recursed to the interpreter's limit and
failed with "maximum recursion depth exceeded", whatever the value.
"""

from __future__ import annotations

from typing import Any

import pytest

from pepperpy.event import ConfigurationError, EventValidator, ValidationError

CYCLES = [
    ({"$ref": "#"}, "'#'"),
    (
        {"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"},
        "'#/$defs/",
    ),
    ({"$defs": {"a": {"allOf": [{"$ref": "#/$defs/a"}]}}, "$ref": "#/$defs/a"}, "'#/$defs/a'"),
    ({"anyOf": [{"type": "integer"}, {"$ref": "#"}]}, "'#'"),
    ({"type": "object", "properties": {"a": {}}, "$ref": "#"}, "'#'"),
    ({"not": {"$ref": "#"}}, "'#'"),
    ({"if": {"$ref": "#"}, "then": {"type": "string"}}, "'#'"),
    ({"oneOf": [{"type": "string"}, {"$ref": "#/$defs/x"}], "$defs": {"x": {"$ref": "#"}}}, "'#"),
    (
        {
            "type": "object",
            "properties": {"v": {"$ref": "#/$defs/loop"}},
            "$defs": {"loop": {"minLength": 1, "$ref": "#/$defs/loop"}},
        },
        "'#/$defs/loop'",
    ),
]


@pytest.mark.parametrize(("schema", "named"), CYCLES)
@pytest.mark.parametrize("extra", ["forbid", "allow"])
def test_a_ref_cycle_that_never_descends_is_refused(schema: Any, named: str, extra: Any) -> None:
    validator = EventValidator(extra_fields=extra)
    with pytest.raises(ConfigurationError, match="refers back to itself") as info:
        validator.register("t.x", schema)
    assert f"$ref {named}" in str(info.value)
    assert "t.x" not in validator  # nothing recorded


TREE = {
    "$defs": {
        "node": {
            "type": "object",
            "properties": {
                "value": {"type": "integer"},
                "children": {"type": "array", "items": {"$ref": "#/$defs/node"}},
            },
            "required": ["value"],
        }
    },
    "$ref": "#/$defs/node",
}


@pytest.mark.parametrize(
    "schema",
    [
        TREE,
        {"type": "object", "properties": {"next": {"$ref": "#"}}},
        {"anyOf": [{"type": "integer"}, {"type": "array", "items": {"$ref": "#"}}]},
        {"type": "object", "additionalProperties": {"$ref": "#"}},
        {"type": "array", "contains": {"$ref": "#"}},
        {"propertyNames": {"$ref": "#"}, "type": "object"},
        {"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"type": "string"}}, "$ref": "#/$defs/a"},
    ],
)
def test_recursion_through_the_value_still_registers(schema: Any) -> None:
    validator = EventValidator(extra_fields="allow")
    validator.register("t.x", schema)
    assert "t.x" in validator


async def test_the_recursive_tree_validates() -> None:
    validator = EventValidator()
    validator.register("t.x", TREE)
    tree = {"value": 1, "children": [{"value": 2, "children": [{"value": 3}]}]}
    assert (await validator.validate("t.x", tree)).data == tree
    with pytest.raises(ValidationError) as info:
        validator.check("t.x", {"value": 1, "children": [{"children": []}]})
    assert [(p.path, p.message) for p in info.value.errors] == [
        ("children[0].value", "field required")
    ]
