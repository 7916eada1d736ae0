"""Every schema kind accepts data up to the depth an Event holds and refuses beyond it clearly.

Event data nests at most ``MAX_DEPTH`` lists and objects. ``check()`` and ``validate()``
accept exactly that (a recursive schema's walk took several frames per level and ran out
of Python's recursion limit from about 249 levels, with "maximum recursion depth exceeded
in __instancecheck__") and refuse deeper data with a ``ValidationError`` saying so.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass
from typing import Any, TypedDict

import pytest
from pydantic import BaseModel

from pepperpy.event import Event, EventValidator, ValidationError
from pepperpy.event._frozen import MAX_DEPTH

LIMIT = MAX_DEPTH


def _depth(value: Any) -> int:
    stack, deepest = [(value, 0)], 0
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
        else:
            deepest = max(deepest, depth)
            continue
        deepest = max(deepest, depth + 1)
    return deepest


def _lists(containers: int) -> dict[str, Any]:
    """``{"x": [[...[1]...]]}``: ``containers`` lists and objects in all."""
    value: Any = 1
    for _ in range(containers - 1):
        value = [value]
    return {"x": value}


def _keys(containers: int) -> dict[str, Any]:
    """``{"k": {"k": ... {}}}``: ``containers`` objects."""
    value: dict[str, Any] = {}
    for _ in range(containers - 1):
        value = {"k": value}
    return value


def _tree(containers: int) -> dict[str, Any]:
    """``{"c": [{"c": [... {"c": []}]}]}`` with exactly ``containers`` lists and objects."""
    levels = (containers - 2) // 2
    value: dict[str, Any] = {"c": []}
    for _ in range(levels):
        value = {"c": [value]}
    if containers % 2:  # one more object: the data at the top holds the tree
        value = {"t": value}
    return value


RECURSIVE_ITEMS = {
    "$defs": {
        "v": {
            "anyOf": [
                {"type": "integer"},
                {"type": "array", "items": {"$ref": "#/$defs/v"}},
                {"type": "object", "additionalProperties": {"$ref": "#/$defs/v"}},
            ]
        }
    },
    "type": "object",
    "properties": {"x": {"$ref": "#/$defs/v"}},
}
RECURSIVE_OBJECT = {
    "$defs": {"n": {"type": "object", "properties": {"k": {"$ref": "#/$defs/n"}}}},
    "$ref": "#/$defs/n",
}
RECURSIVE_TREE = {
    "$defs": {
        "t": {
            "type": "object",
            "properties": {"c": {"type": "array", "items": {"$ref": "#/$defs/t"}}},
            "required": ["c"],
            "additionalProperties": False,
        }
    },
    "type": "object",
    "properties": {
        "c": {"type": "array", "items": {"$ref": "#/$defs/t"}},
        "t": {"$ref": "#/$defs/t"},
    },
    "additionalProperties": False,
}


@dataclass
class DataTree:
    c: list[DataTree]


@dataclass
class DataNode:
    k: DataNode | None = None


class DictTree(TypedDict):
    c: list[DictTree]


@dataclass
class DataTop:
    t: DataTree


class DictTop(TypedDict):
    t: DictTree


class AnyHolder(TypedDict):
    """Has a fast path (msgspec) whose output the schema does not bound."""

    x: Any
    n: int


def _schemas() -> list[tuple[str, Any, Any]]:
    return [
        ("json-recursive-arrays", RECURSIVE_ITEMS, _lists),
        ("json-recursive-objects", RECURSIVE_OBJECT, _keys),
        ("json-recursive-tree", RECURSIVE_TREE, _tree),
        ("dataclass-node", DataNode, _keys),
        ("any-fast-path", AnyHolder, lambda n: {**_lists(n), "n": 1}),
        ("json-any-value", {"type": "object", "properties": {"x": {}}}, _lists),
    ]


def _tree_schemas() -> list[tuple[str, Any, Any]]:
    """Trees: even depths as the tree itself, odd ones under a key ``t``."""
    return [("dataclass-tree", DataTree, DataTop), ("typeddict-tree", DictTree, DictTop)]


def _refused_as_too_deep(exc: ValidationError) -> None:
    text = str(exc)
    assert "nested too deeply" in text, text
    assert "recursion" not in text.lower(), text
    assert "instancecheck" not in text, text


def _both(validator: EventValidator, data: Any) -> tuple[Any, Event[Any]]:
    checked, _ = validator.check("t", data)
    event = asyncio.run(validator.validate("t", data))
    return checked, event


@pytest.mark.parametrize(("name", "schema", "make"), _schemas(), ids=[s[0] for s in _schemas()])
@pytest.mark.parametrize("depth", [LIMIT - 1, LIMIT])
def test_accepted_up_to_event_limit(name: str, schema: Any, make: Any, depth: int) -> None:
    data = make(depth)
    assert _depth(data) == depth
    Event(type="t", data=data)  # an Event holds it
    validator = EventValidator()
    validator.register("t", schema)
    checked, event = _both(validator, data)
    assert _depth(checked) == depth
    assert _depth(event.to_dict()["data"]) == depth


@pytest.mark.parametrize(("name", "schema", "make"), _schemas(), ids=[s[0] for s in _schemas()])
@pytest.mark.parametrize("depth", [LIMIT + 1, LIMIT + 50, 5000])
def test_refused_beyond_event_limit(name: str, schema: Any, make: Any, depth: int) -> None:
    data = make(depth)
    validator = EventValidator()
    validator.register("t", schema)
    with pytest.raises(ValidationError) as checked:
        validator.check("t", data)
    _refused_as_too_deep(checked.value)
    with pytest.raises(ValidationError) as validated:
        asyncio.run(validator.validate("t", data))
    _refused_as_too_deep(validated.value)


@pytest.mark.parametrize(
    ("name", "tree", "top"), _tree_schemas(), ids=[s[0] for s in _tree_schemas()]
)
@pytest.mark.parametrize("depth", [LIMIT - 1, LIMIT, LIMIT + 1])
def test_python_recursive_types(name: str, tree: Any, top: Any, depth: int) -> None:
    data = _tree(depth)
    assert _depth(data) == depth
    validator = EventValidator()
    validator.register("t", top if depth % 2 else tree)
    if depth <= LIMIT:
        checked, event = _both(validator, data)
        assert checked == data
        assert event.data == data
        return
    with pytest.raises(ValidationError) as checked_exc:
        validator.check("t", data)
    _refused_as_too_deep(checked_exc.value)
    with pytest.raises(ValidationError) as validated:
        asyncio.run(validator.validate("t", data))
    _refused_as_too_deep(validated.value)


def _deep_call(frames: int, call: Any) -> Any:
    if frames == 0:
        return call()
    return _deep_call(frames - 1, call)


@pytest.mark.parametrize("caller_frames", [0, 300, 600])
def test_deep_caller_still_gets_the_event_limit(caller_frames: int) -> None:
    """The limit does not shrink with the caller's own stack depth."""
    validator = EventValidator()
    validator.register("t", RECURSIVE_ITEMS)
    limit_before = sys.getrecursionlimit()
    checked, _ = _deep_call(caller_frames, lambda: validator.check("t", _lists(LIMIT)))
    assert _depth(checked) == LIMIT
    with pytest.raises(ValidationError) as exc:
        _deep_call(caller_frames, lambda: validator.check("t", _lists(LIMIT + 1)))
    _refused_as_too_deep(exc.value)
    assert sys.getrecursionlimit() == limit_before  # the extra room was given back


@pytest.mark.parametrize("depth", [LIMIT - 1, LIMIT])
def test_walk_reports_a_bad_leaf_at_the_limit(depth: int) -> None:
    """Invalid data as deep as an Event holds: the walk names the problem, not the stack."""
    data = _tree(depth)
    inner = data.get("t", data)
    while inner["c"]:
        inner = inner["c"][0]
    inner["c"].append(5)  # a number where the tree wants an object
    assert _depth(data) == depth
    validator = EventValidator()
    validator.register("t", RECURSIVE_TREE)
    with pytest.raises(ValidationError) as exc:
        validator.check("t", data)
    text = str(exc.value)
    assert "recursion" not in text.lower()
    assert "nested too deeply" not in text
    [problem] = exc.value.errors
    assert problem.path.endswith("c[0].c[0]")  # down where the number is
    assert problem.path.count("[0]") == depth // 2
    assert problem.message == "wrong type"

    holder = EventValidator()
    holder.register("t", AnyHolder)
    with pytest.raises(ValidationError) as fast_missed:  # fast path refuses; the walk explains
        holder.check("t", {**_lists(depth), "n": "one"})
    assert [p.path for p in fast_missed.value.errors] == ["n"]


class ModelNode(BaseModel):
    k: ModelNode | None = None


@pytest.mark.parametrize("depth", [200, 201, 202, LIMIT, LIMIT + 1])
def test_pydantic_recursive_model(depth: int) -> None:
    """pydantic reads the data as JSON, and its parser stops at 201 levels: said plainly."""
    data = _keys(depth)
    validator = EventValidator()
    validator.register("t", ModelNode)
    if depth <= 201:
        checked, event = _both(validator, data)
        assert _depth(checked) == depth
        assert _depth(event.to_dict()["data"]) == depth
        return
    with pytest.raises(ValidationError) as exc:
        validator.check("t", data)
    _refused_as_too_deep(exc.value)
    assert "Invalid JSON" not in str(exc.value)
    with pytest.raises(ValidationError) as validated:
        asyncio.run(validator.validate("t", data))
    _refused_as_too_deep(validated.value)
