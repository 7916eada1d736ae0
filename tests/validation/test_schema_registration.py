"""Class schemas with bad constraints are refused at registration with a
``ConfigurationError`` naming them, not with an error from deep inside when data is
checked."""

from __future__ import annotations

import dataclasses
import enum
import uuid
from decimal import Decimal
from typing import Annotated, Any, Literal

import annotated_types as at
import msgspec
import pytest

from pepperpy.event import ConfigurationError, EventValidator, ValidationError


class Level(enum.IntEnum):
    LOW = 1


class Color(enum.Enum):
    RED = "red"


def _schema(annotation: Any) -> Any:
    return dataclasses.make_dataclass("S", [("x", annotation)])


@pytest.mark.parametrize(
    ("marker", "words"),
    [
        # decimal.InvalidOperation on every value checked
        (at.Gt(float("nan")), "gt of a Decimal must be a finite number"),
        (at.Le(Decimal("NaN")), "le of a Decimal must be a finite number"),
        (at.MultipleOf(0), "multiple_of must be > 0"),
        # decimal.InvalidOperation (ConversionSyntax) out of register()
        (at.Gt("abc"), "gt of a Decimal must be a finite number"),
        # accepted, though a step must be positive (as for an int or float field)
        (at.MultipleOf(-1), "multiple_of must be > 0"),
        (at.Ge(True), "ge of a Decimal must be a finite number"),
    ],
)
def test_a_bad_decimal_bound_is_refused_at_registration(marker: Any, words: str) -> None:
    validator = EventValidator()
    with pytest.raises(ConfigurationError, match=words):
        validator.register("x", _schema(Annotated[Decimal, marker]))


@pytest.mark.parametrize("key", [int, uuid.UUID, Level])
def test_a_dict_whose_keys_are_no_str_is_refused_at_registration(key: Any) -> None:
    # dict[int, str] took {1: "a"}: check() returned an int key and validate() an
    # Event that failed only when stored or published (its JSON keys are strs)
    for schema in (_schema(dict[key, str]), msgspec.defstruct("S", [("x", dict[key, str])])):
        with pytest.raises(ConfigurationError, match="a dict's keys must be str"):
            EventValidator().register("x", schema)


@pytest.mark.parametrize(
    ("key", "valid"), [(Any, "a"), (str, "a"), (Literal["a", "b"], "a"), (Color, "red")]
)
async def test_a_dict_of_str_keys_refuses_a_key_that_is_no_str(key: Any, valid: str) -> None:
    # dict[Any, int] took {1: 2} as it is: an event no JSON could hold
    validator = EventValidator()
    validator.register("x", _schema(dict[key, int]))
    assert (await validator.validate("x", {"x": {valid: 1}})).data == {"x": {valid: 1}}
    with pytest.raises(ValidationError) as caught:
        await validator.validate("x", {"x": {1: 2}})
    assert [p.path for p in caught.value.errors] == ["x['1']"]


@pytest.mark.parametrize(
    ("marker", "base", "bad", "good"),
    [
        (at.Gt(0), int, 0, 1),
        (at.MinLen(1), list[int], [], [1]),
        (at.MaxLen(1), str, "ab", "a"),
    ],
)
def test_a_marker_on_an_optional_constrains_its_value(
    marker: Any, base: Any, bad: Any, good: Any
) -> None:
    # Annotated[int | None, Gt(0)] was refused at registration ("only min_length/
    # max_length constrain a container"); pydantic constrains the int
    validator = EventValidator()
    validator.register("x", _schema(Annotated[base | None, marker]))
    validator.check("x", {"x": None})
    validator.check("x", {"x": good})
    with pytest.raises(ValidationError):
        validator.check("x", {"x": bad})
