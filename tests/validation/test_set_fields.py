"""``set`` and ``frozenset`` fields of class schemas: the items a Python set can hold,
and how a set inside a union explains a refusal."""

from __future__ import annotations

import dataclasses
import json
from typing import Annotated, Any, Optional, Union

import annotated_types as at
import msgspec
import pytest

from pepperpy.event import EventValidator, ValidationError

pydantic = pytest.importorskip("pydantic")


@dataclasses.dataclass
class _Plain:
    a: int


@dataclasses.dataclass(frozen=True)
class _Frozen:
    a: int
    b: Any = None


def _schema(annotation: Any) -> Any:
    return dataclasses.make_dataclass("S", [("x", annotation)])


def _problems(cls: Any, data: Any) -> list[Any] | None:
    validator = EventValidator()
    validator.register("t", cls)
    try:
        validator.check("t", data)
    except ValidationError as exc:
        return list(exc.errors)
    return None


def _pydantic_accepts(cls: Any, data: Any) -> bool:
    try:
        pydantic.TypeAdapter(cls).validate_json(json.dumps(data), strict=True)
    except pydantic.ValidationError:
        return False
    return True


@pytest.mark.parametrize(
    ("annotation", "items", "where"),
    [
        # a JSON array or object is a list or dict to pydantic, which a set cannot hold:
        # pydantic refuses it (set_item_not_hashable), the validator accepted it
        (set[Any], [[1]], "x[0]"),
        (frozenset[Any], [1, {"a": 1}], "x[1]"),
        (list[set[Any]], [[[1]]], "x[0][0]"),
        (set, [[1]], "x[0]"),
        (set[list[int]], [[1]], "x[0]"),
        (set[dict[str, int]], [{"a": 1}], "x[0]"),
        (set[tuple[int, Any]], [[1, [2]]], "x[0]"),
        (set[_Plain], [{"a": 1}], "x[0]"),
        (set[_Frozen], [{"a": 1, "b": [1]}], "x[0]"),
        (set[Union[int, list[int]]], [2, [1]], "x[1]"),  # noqa: UP007
    ],
)
def test_an_unhashable_set_item_is_refused_at_its_path(
    annotation: Any, items: list[Any], where: str
) -> None:
    cls = _schema(annotation)
    assert not _pydantic_accepts(cls, {"x": items})
    problems = _problems(cls, {"x": items})
    assert problems is not None
    assert [p.path for p in problems] == [where]
    assert "must be hashable" in problems[0].message


@pytest.mark.parametrize(
    ("annotation", "items"),
    [
        (set[Any], [1, "a", None, True]),
        (set[list[int]], []),
        (set[tuple[int, ...]], [[1], [2, 3]]),
        (set[_Frozen], [{"a": 1}]),
        (set[Union[int, list[int]]], [1, 2]),  # noqa: UP007
    ],
)
def test_hashable_set_items_are_accepted(annotation: Any, items: list[Any]) -> None:
    cls = _schema(annotation)
    assert _pydantic_accepts(cls, {"x": items})
    assert _problems(cls, {"x": items}) is None


def test_a_struct_set_of_any_refuses_an_unhashable_item() -> None:
    class S(msgspec.Struct):
        x: set[Any]

    problems = _problems(S, {"x": [2, [1]]})
    assert problems is not None
    assert [p.path for p in problems] == ["x[1]"]


@pytest.mark.parametrize(
    ("annotation", "items", "where", "message", "expected"),
    [
        # the union said "wrong type (expected set of int | set of int ...)": the kind
        # twice, and not what was wrong
        (Union[frozenset[int], set[int]], [1, 1], "x", "items must be unique", "set of int"),  # noqa: UP007
        (Optional[set[int]], [1, 1], "x", "items must be unique", "set of int"),  # noqa: UP045
        (Union[set[int], str], [2, 2], "x", "items must be unique", "set of int"),  # noqa: UP007
        (Optional[set[Any]], [[1]], "x[0]", "must be hashable", "hashable value"),  # noqa: UP045
    ],
)
def test_a_set_in_a_union_says_once_what_is_wrong(
    annotation: Any, items: list[Any], where: str, message: str, expected: str
) -> None:
    problems = _problems(_schema(annotation), {"x": items})
    assert problems is not None
    assert len(problems) == 1
    assert problems[0].path == where
    assert message in problems[0].message
    assert problems[0].expected.startswith(expected)
    assert "|" not in problems[0].expected


def test_a_union_names_each_kind_once() -> None:
    problems = _problems(_schema(Union[frozenset[int], set[int]]), {"x": 3})  # noqa: UP007
    assert problems is not None
    assert [p.expected for p in problems] == ["set of int"]


@pytest.mark.parametrize(
    ("annotation", "bad", "message"),
    [
        # said "wrong type (expected int > 0 | null, got int 0)": not what was wrong
        (Optional[Annotated[int, at.Gt(0)]], 0, "must be > 0"),  # noqa: UP045
        (Optional[Annotated[str, at.MaxLen(1)]], "ab", "must have length <= 1"),  # noqa: UP045
    ],
)
def test_an_optional_value_is_explained_by_its_type(
    annotation: Any, bad: Any, message: str
) -> None:
    problems = _problems(_schema(annotation), {"x": bad})
    assert problems is not None
    assert [(p.path, p.message) for p in problems] == [("x", message)]


def test_an_optional_value_of_the_wrong_type_names_both_types() -> None:
    problems = _problems(_schema(Optional[int]), {"x": "a"})  # noqa: UP045
    assert problems is not None
    assert [(p.expected, p.message) for p in problems] == [("int | null", "wrong type")]


@dataclasses.dataclass(frozen=True)
class _Chain:
    v: int
    nxt: _Chain | None = None
    tags: tuple[Any, ...] = ()


@pytest.mark.parametrize(
    ("item", "hashable"),
    [
        # the nested _Chain was not looked into (a recursive type): accepted
        ({"v": 1, "nxt": {"v": 2, "tags": [[1]]}}, False),
        ({"v": 1, "nxt": {"v": 2, "tags": [1]}}, True),
    ],
)
def test_a_recursive_frozen_dataclass_is_judged_at_every_level(item: Any, hashable: bool) -> None:
    cls = _schema(set[_Chain])
    assert _pydantic_accepts(cls, {"x": [item]}) is hashable
    assert (_problems(cls, {"x": [item]}) is None) is hashable
