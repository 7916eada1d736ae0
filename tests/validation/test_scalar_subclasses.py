"""str, int and float subclasses in valid data are their base type; other objects are
refused with a ValidationError naming them, never a raw TypeError (SPEC section 11).

``markupsafe.Markup`` (what Jinja2 returns) is a ``str`` subclass; ORMs and i18n
libraries have their own. ``Event()`` accepts them; every schema kind accepts them too,
on the fast path and in the walk, and the validated data holds the base type.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any, Literal, TypedDict

import msgspec
import pydantic
import pytest

from pepperpy.event import Event, EventValidator, ValidationError


class Text(str):
    """A str subclass, as markupsafe.Markup is."""


class Number(float):
    pass


class Count(int):
    pass


class Colour(enum.Enum):
    RED = "red"


class Plain:
    name: str
    x: float
    n: int
    tags: list[str]
    labels: dict[str, str]
    kind: Literal["a", "b"]
    colour: Colour
    extra: Any
    maybe: str | None


@dataclasses.dataclass
class DC:
    name: str
    x: float
    n: int
    tags: list[str]
    labels: dict[str, str]
    kind: Literal["a", "b"]
    colour: Colour
    extra: Any
    maybe: str | None


class TD(TypedDict):
    name: str
    x: float
    n: int
    tags: list[str]
    labels: dict[str, str]
    kind: Literal["a", "b"]
    colour: Colour
    extra: Any
    maybe: str | None


class MS(msgspec.Struct):
    name: str
    x: float
    n: int
    tags: list[str]
    labels: dict[str, str]
    kind: Literal["a", "b"]
    colour: Colour
    extra: Any
    maybe: str | None


class PD(pydantic.BaseModel):
    name: str
    x: float
    n: int
    tags: list[str]
    labels: dict[str, str]
    kind: Literal["a", "b"]
    colour: Colour
    extra: Any
    maybe: str | None


_PROPERTIES: dict[str, Any] = {
    "name": {"type": "string", "pattern": "^[A-Z]"},
    "x": {"type": "number"},
    "n": {"type": "integer"},
    "tags": {"type": "array", "items": {"type": "string"}},
    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
    "kind": {"enum": ["a", "b"]},
    "colour": {"const": "red"},
    "extra": {},
    "maybe": {"type": ["string", "null"]},
}
JSON_FAST = {
    "type": "object",
    "properties": _PROPERTIES,
    "required": list(_PROPERTIES),
    "additionalProperties": False,
}
JSON_WALK = {"type": "object", "properties": _PROPERTIES, "required": list(_PROPERTIES)}

SCHEMAS: dict[str, Any] = {
    "plain": Plain,
    "dataclass": DC,
    "typeddict": TD,
    "struct": MS,
    "pydantic": PD,
    "json-fast": JSON_FAST,
    "json-walk": JSON_WALK,
}


def _validator(**options: Any) -> EventValidator:
    validator = EventValidator(**options)
    for name, schema in SCHEMAS.items():
        validator.register(name, schema)
    return validator


def _subclassed() -> dict[str, Any]:
    return {
        "name": Text("Ana"),
        "x": Number(1.5),
        "n": Count(3),
        "tags": [Text("t")],
        "labels": {Text("k"): Text("v")},
        "kind": Text("a"),
        "colour": Text("red"),
        "extra": {"deep": [Text("x"), Number(2.5), Count(4)]},
        "maybe": Text("m"),
    }


EXPECTED = {
    "name": "Ana",
    "x": 1.5,
    "n": 3,
    "tags": ["t"],
    "labels": {"k": "v"},
    "kind": "a",
    "colour": "red",
    "extra": {"deep": ["x", 2.5, 4]},
    "maybe": "m",
}


def _base_types_only(value: Any) -> None:
    """Every str, int and float in ``value`` (keys too) is exactly that type."""
    if isinstance(value, dict):
        for key, item in value.items():
            assert type(key) is str, key
            _base_types_only(item)
    elif isinstance(value, list):
        for item in value:
            _base_types_only(item)
    elif isinstance(value, str | int | float):
        assert type(value) in (str, int, float, bool), (type(value), value)


@pytest.mark.parametrize("kind", list(SCHEMAS))
@pytest.mark.parametrize("extra_fields", [None, "allow"])  # "allow": the walk for classes
async def test_subclass_values_are_accepted_as_their_base_type(
    kind: str, extra_fields: str | None
) -> None:
    validator = _validator(extra_fields=extra_fields)
    data, _ = validator.check(kind, _subclassed())
    assert data == EXPECTED
    _base_types_only(data)
    event = await validator.validate(kind, _subclassed())
    assert event.data == EXPECTED
    _base_types_only(dict(event.data))
    assert Event.from_json(event.to_json()).data == EXPECTED


@pytest.mark.parametrize("kind", list(SCHEMAS))
async def test_subclass_in_a_list_of_str(kind: str) -> None:
    """The audit's case: a str subclass inside a ``list[str]`` (and alone)."""
    validator = _validator()
    data = {**EXPECTED, "tags": [Text("a"), "b"], "name": Text("Ana")}
    event = await validator.validate(kind, data)
    assert event.data["tags"] == ["a", "b"]
    assert type(event.data["tags"][0]) is str
    assert type(event.data["name"]) is str


async def test_str_subclass_values_against_a_plain_class_schema() -> None:
    """repro_v2: ``Markup``-like text in a plain class schema's field."""
    validator = EventValidator()

    @validator.schema("user.created")
    class UserCreated:
        name: str

    event = await validator.validate("user.created", {"name": Text("Ana")})
    assert event.data == {"name": "Ana"}
    assert type(event.data["name"]) is str


async def test_float_subclass_against_a_pydantic_model() -> None:
    validator = EventValidator()
    validator.register("pd", PD)
    event = await validator.validate("pd", {**EXPECTED, "x": Number(2.5)})
    assert event.data["x"] == 2.5
    assert type(event.data["x"]) is float


def test_subclass_constraints_still_apply() -> None:
    """A subclass instance is judged as its base value: bounds and patterns hold."""
    validator = _validator()
    for kind in SCHEMAS:
        with pytest.raises(ValidationError) as caught:
            validator.check(kind, {**EXPECTED, "kind": Text("c")})
        assert [p.path for p in caught.value.errors] == ["kind"], kind
    for kind in ("json-fast", "json-walk"):
        with pytest.raises(ValidationError) as caught:
            validator.check(kind, {**EXPECTED, "name": Text("ana")})
        assert [p.path for p in caught.value.errors] == ["name"]


def test_bool_is_still_no_number() -> None:
    validator = _validator()
    for kind in SCHEMAS:
        if kind == "pydantic":
            continue  # pydantic's own rule (strict JSON mode refuses it too)
        with pytest.raises(ValidationError):
            validator.check(kind, {**EXPECTED, "n": True})


class _Opaque:
    """An object JSON has no form for."""


@pytest.mark.parametrize("kind", list(SCHEMAS))
@pytest.mark.parametrize(
    ("field", "value", "path"),
    [
        ("name", _Opaque(), "name"),
        ("tags", ["a", _Opaque()], "tags[1]"),
        ("labels", {"k": _Opaque()}, "labels.k"),
        ("extra", {"deep": [_Opaque()]}, "extra"),
        ("x", _Opaque(), "x"),
    ],
)
def test_unsupported_objects_give_a_validation_error_naming_the_path(
    kind: str, field: str, value: Any, path: str
) -> None:
    validator = _validator()
    with pytest.raises(ValidationError) as caught:
        validator.check(kind, {**EXPECTED, field: value})
    paths = [problem.path for problem in caught.value.errors]
    assert paths, kind
    assert all(p.startswith(path) for p in paths), (kind, paths)
