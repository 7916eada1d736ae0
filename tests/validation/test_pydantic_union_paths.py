"""A pydantic model's problems inside a union are named by the data's keys and indexes.

pydantic-core's ``loc`` adds a step for each union branch (``x.set[int][0]``), for the
tag of a tagged union and after a refused dict key (``'[key]'``); the problems name
the path as the other schema kinds do (``x[0]``), told from the model's core schema,
so a key that merely reads like a branch label is kept.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, Literal

import pytest

pydantic = pytest.importorskip("pydantic")

from pepperpy.event import EventValidator, ValidationError  # noqa: E402


class Cat(pydantic.BaseModel):
    kind: Literal["cat"]
    lives: int


class Dog(pydantic.BaseModel):
    kind: Literal["dog"]
    lives: int


class Tree(pydantic.BaseModel):
    value: int | str
    kids: list[Tree] | None = None


class Model(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(val_json_bytes="base64", ser_json_bytes="base64")

    numbers: set[int] | frozenset[int] | None = None
    table: dict[str, list[int] | int] = {}
    keyed: dict[Literal["k"], int] = {}
    pair: tuple[int, str | bytes] | None = None
    tagged: Annotated[Cat | Dog, pydantic.Field(discriminator="kind")] | None = None
    untagged: Cat | Dog | None = None
    tree: Tree | list[Tree] | None = None


@dataclasses.dataclass
class Same:
    numbers: set[int] | frozenset[int] | None = None
    table: dict[str, list[int] | int] = dataclasses.field(default_factory=dict)
    keyed: dict[Literal["k"], int] = dataclasses.field(default_factory=dict)
    pair: tuple[int, str | bytes] | None = None


async def _paths(schema: Any, data: dict[str, Any]) -> list[str]:
    validator = EventValidator()
    validator.register("t", schema)
    with pytest.raises(ValidationError) as caught:
        await validator.validate("t", data)
    return [problem.path for problem in caught.value.errors]


async def test_a_union_of_containers_names_the_item_not_the_branch() -> None:
    validator = EventValidator()
    validator.register("t", Model)
    with pytest.raises(ValidationError) as caught:
        await validator.validate("t", {"numbers": [1, "a"]})
    # both branches fail alike at the same item: one problem, named as data names it
    assert [(p.path, p.loc) for p in caught.value.errors] == [("numbers[1]", ("numbers", 1))]
    assert "set[int]" not in str(caught.value)


@pytest.mark.parametrize(
    ("data", "paths"),
    [
        ({"table": {"a": ["x"]}}, ["table.a[0]", "table.a"]),
        ({"keyed": {"j": 1}}, ["keyed.j"]),
        ({"pair": [1, 2]}, ["pair[1]", "pair[1]"]),  # not a str, not bytes
        ({"tagged": {"kind": "cat", "lives": "x"}}, ["tagged.lives"]),
        ({"untagged": {"kind": "cat", "lives": "x"}}, ["untagged.lives", "untagged.kind"]),
        (
            {"tree": {"value": 1, "kids": [{"value": []}]}},
            ["tree.kids[0].value", "tree.kids[0].value", "tree"],
        ),
        ({"tree": [{"value": []}]}, ["tree", "tree[0].value", "tree[0].value"]),
    ],
)
async def test_branch_steps_are_dropped(data: dict[str, Any], paths: list[str]) -> None:
    assert await _paths(Model, data) == paths


@pytest.mark.parametrize(
    "data",
    [{"numbers": ["a"]}, {"table": {"a": ["x"]}}, {"keyed": {"j": 1}}, {"pair": [1, 2]}],
)
async def test_paths_are_those_a_dataclass_names(data: dict[str, Any]) -> None:
    assert set(await _paths(Model, data)) >= set(await _paths(Same, data))


class Lookalike(pydantic.BaseModel):
    x: dict[str, list[int]] | str
    y: dict[str, dict[str, int]] = {}


async def test_a_key_reading_like_a_branch_label_is_kept() -> None:
    # 'str' is a key of the data here (below the dict branch), not the str branch's label
    paths = await _paths(Lookalike, {"x": {"str": ["a"]}, "y": {"a": {"[key]": "b"}}})
    assert paths == ["x.str[0]", "x", "y.a['[key]']"]
