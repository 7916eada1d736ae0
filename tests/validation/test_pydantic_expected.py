"""A pydantic model's problems say what was expected in the words the other schema kinds
use (``float``, ``> 0``, ``one of 'a', 'b'``), not pydantic's codes (user audit #15)."""

from __future__ import annotations

import dataclasses
import enum
from typing import Annotated, Any, Literal

import annotated_types as at
import pydantic
import pytest

from pepperpy.event import EventValidator, ValidationError
from pepperpy.event.validation._pydantic_expected import pydantic_expected


class Color(enum.Enum):
    RED = "r"
    GREEN = "g"


class PInner(pydantic.BaseModel):
    x: int


class PModel(pydantic.BaseModel):
    amount: float = pydantic.Field(gt=0)
    n: int = pydantic.Field(ge=0, le=10)
    name: str = pydantic.Field(min_length=3)
    code: str = pydantic.Field(max_length=2)
    kind: Literal["a", "b"]
    color: Color
    flag: bool
    tags: list[str] = pydantic.Field(min_length=1)
    inner: PInner


@dataclasses.dataclass
class DInner:
    x: int


@dataclasses.dataclass
class DModel:
    amount: Annotated[float, at.Gt(0)]
    n: Annotated[int, at.Ge(0), at.Le(10)]
    name: Annotated[str, at.MinLen(3)]
    code: Annotated[str, at.MaxLen(2)]
    kind: Literal["a", "b"]
    color: Color
    flag: bool
    tags: Annotated[list[str], at.MinLen(1)]
    inner: DInner


JSON_SCHEMA = {
    "type": "object",
    "properties": {
        "amount": {"type": "number", "exclusiveMinimum": 0},
        "n": {"type": "integer", "minimum": 0, "maximum": 10},
        "name": {"type": "string", "minLength": 3},
        "code": {"type": "string", "maxLength": 2},
        "kind": {"enum": ["a", "b"]},
        "color": {"enum": ["r", "g"]},
        "flag": {"type": "boolean"},
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1},
        "inner": {"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]},
    },
    "required": ["amount", "n", "name", "code", "kind", "color", "flag", "tags", "inner"],
    "additionalProperties": False,
}

VALID = {
    "amount": 1.5,
    "n": 1,
    "name": "abc",
    "code": "ab",
    "kind": "a",
    "color": "r",
    "flag": True,
    "tags": ["t"],
    "inner": {"x": 1},
}


def _validator() -> EventValidator:
    validator = EventValidator()
    validator.register("t.pydantic", PModel)
    validator.register("t.dataclass", DModel)
    validator.register("t.json", JSON_SCHEMA)
    return validator


async def _problem(validator: EventValidator, event_type: str, data: Any, path: str) -> Any:
    with pytest.raises(ValidationError) as caught:
        await validator.validate(event_type, data)
    found = {problem.path: problem for problem in caught.value.errors}
    assert list(found) == [path], caught.value
    return found[path]


# (field, bad value, pydantic's expected, the dataclass's, the JSON Schema's)
CASES = [
    ("amount", -1, "> 0", "float > 0", "number > 0"),
    ("amount", "5", "float", "float > 0", "number > 0"),
    ("n", 11, "<= 10", "int (>= 0, <= 10)", "int (>= 0, <= 10)"),
    ("n", 1.5, "int", "int (>= 0, <= 10)", "int (>= 0, <= 10)"),
    ("name", "ab", "str (length >= 3)", "str (length >= 3)", "str (length >= 3)"),
    ("name", 3, "str", "str (length >= 3)", "str (length >= 3)"),
    ("code", "abc", "str (length <= 2)", "str (length <= 2)", "str (length <= 2)"),
    ("kind", "c", "one of 'a', 'b'", "one of 'a', 'b'", "one of 'a', 'b'"),
    ("color", "x", "one of 'r', 'g'", "Color (one of 'r', 'g')", "one of 'r', 'g'"),
    ("flag", "yes", "bool", "bool", "bool"),
    ("tags", [], "list (length >= 1)", "list of str", "list of str"),
    ("tags", "a", "list", "list of str", "list of str"),
    ("inner", [], "object PInner", "object DInner", "object"),
]


@pytest.mark.parametrize(("field", "bad", "from_pydantic", "from_dataclass", "from_json"), CASES)
async def test_pydantic_expected_reads_like_the_other_schema_kinds(
    field: str, bad: Any, from_pydantic: str, from_dataclass: str, from_json: str
) -> None:
    validator = _validator()
    data = {**VALID, field: bad}
    pydantic_problem = await _problem(validator, "t.pydantic", data, field)
    assert pydantic_problem.expected == from_pydantic
    assert (await _problem(validator, "t.dataclass", data, field)).expected == from_dataclass
    assert (await _problem(validator, "t.json", data, field)).expected == from_json
    # the same thing, or the part of it that failed: the bound, or the kind of value
    kind = from_pydantic.split(" ")[0]
    assert from_pydantic in from_dataclass or from_dataclass.startswith(kind)
    # the message stays pydantic's own
    assert pydantic_problem.message.startswith(("Input should", "String should", "List should"))


async def test_nested_field_and_extra_field_and_missing_field() -> None:
    validator = _validator()
    data = {**VALID, "inner": {"x": "1"}, "extra": 1}
    del data["name"]
    for event_type in ("t.dataclass", "t.json"):
        with pytest.raises(ValidationError) as caught:
            await validator.validate(event_type, data)
        other = {p.path: (p.expected, p.actual) for p in caught.value.errors}
        assert other["inner.x"] == ("int", "str '1'")
        assert other["extra"] == ("no such field", "int 1")
        assert other["name"][1] == "missing"
    with pytest.raises(ValidationError) as caught:
        await validator.validate("t.pydantic", data)
    found = {p.path: (p.expected, p.actual, p.message) for p in caught.value.errors}
    assert found == {
        "extra": ("no such field", "int 1", "unexpected field"),
        "inner.x": ("int", "str '1'", "Input should be a valid integer"),
        # pydantic's input for a missing field is the object around it: not shown as found
        "name": ("a value", "missing", "Field required"),
    }


async def test_the_audit_repro_payment() -> None:
    class Payment(pydantic.BaseModel):
        amount: float = pydantic.Field(gt=0)
        currency: str = "EUR"

    validator = EventValidator()
    validator.register("payment.made", Payment)
    for data, expected, message in [
        ({"amount": -1}, "> 0", "Input should be greater than 0"),
        ({"amount": "5"}, "float", "Input should be a valid number"),
    ]:
        problem = await _problem(validator, "payment.made", data, "amount")
        assert (problem.expected, problem.message) == (expected, message)


async def test_an_unhashable_set_item_of_a_model() -> None:
    # the expected text was pydantic's code itself: "set_item_not_hashable"
    class Tags(pydantic.BaseModel):
        tags: set[Any]

    validator = EventValidator()
    validator.register("tags", Tags)
    problem = await _problem(validator, "tags", {"tags": [1, [2]]}, "tags[1]")
    assert problem.expected == "hashable value"


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        ({"type": "greater_than_equal", "ctx": {"ge": 0.5}}, ">= 0.5"),
        ({"type": "less_than", "ctx": {"lt": 100.0}}, "< 100"),
        ({"type": "multiple_of", "ctx": {"multiple_of": 3}}, "multiple of 3"),
        ({"type": "literal_error", "ctx": {"expected": "'a', 'b' or 'c'"}}, "one of 'a', 'b', 'c'"),
        ({"type": "literal_error", "ctx": {"expected": "'a'"}}, "one of 'a'"),
        # a value holding " or ": pydantic's separator is not certain, its text is kept
        (
            {"type": "literal_error", "ctx": {"expected": "'x or y' or 'z'"}},
            "one of 'x or y' or 'z'",
        ),
        (
            {"type": "too_long", "ctx": {"field_type": "Tuple", "max_length": 2}},
            "tuple (length <= 2)",
        ),
        ({"type": "string_pattern_mismatch", "ctx": {"pattern": "^a"}}, "str (matching '^a')"),
        ({"type": "value_error", "ctx": {"error": "no"}}, "a value the model's validators accept"),
        # a code without a mapping (a future pydantic's) is given as it is
        ({"type": "some_future_code", "ctx": {}}, "some_future_code"),
        ({"type": "greater_than"}, "greater_than"),  # no ctx to read the bound from
    ],
)
def test_codes_and_their_fallback(error: dict[str, Any], expected: str) -> None:
    assert pydantic_expected(error) == expected
