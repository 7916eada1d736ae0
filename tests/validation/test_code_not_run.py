"""Schema classes whose own code checks data: the validator never makes an instance, so
that code never runs. ``__post_init__`` of a dataclass or msgspec Struct, and a pydantic
dataclass's validators, were skipped and what they refuse was accepted; such classes
are refused at registration. A pydantic dataclass without validators is read as a
dataclass (it raised AttributeError at registration)."""

from __future__ import annotations

import dataclasses
from typing import Annotated

import msgspec
import pydantic
import pydantic.dataclasses
import pytest

from pepperpy.event import ConfigurationError, EventValidator, ValidationError


@dataclasses.dataclass
class Period:
    start: int
    end: int

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise ValueError("end before start")


@dataclasses.dataclass
class Booking:
    room: str
    period: Period


class StructPeriod(msgspec.Struct):
    start: int
    end: int

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise ValueError("end before start")


@pydantic.dataclasses.dataclass
class Checked:
    amount: int

    @pydantic.field_validator("amount")
    @classmethod
    def positive(cls, value: int) -> int:
        if value <= 0:
            raise ValueError("must be positive")
        return value


@dataclasses.dataclass
class Order:
    line: Checked


@pytest.mark.parametrize(
    ("schema", "named"),
    [
        (Period, "dataclass Period defines __post_init__"),
        (Booking, "dataclass Period defines __post_init__"),  # nested
        (StructPeriod, "msgspec Struct StructPeriod defines __post_init__"),
        (list[StructPeriod], "msgspec Struct StructPeriod defines __post_init__"),
        (Checked, "pydantic dataclass Checked has validators (positive)"),
        (Order, "pydantic dataclass Checked has validators (positive)"),
    ],
)
async def test_a_class_whose_checks_would_not_run_is_refused(schema: object, named: str) -> None:
    validator = EventValidator()
    with pytest.raises(ConfigurationError, match="accepted silently") as refused:
        validator.register("booked", schema)
    assert named in str(refused.value)
    # nothing registered: the data those checks refuse is not accepted unchecked
    with pytest.raises(ValidationError, match="no schema is registered"):
        await validator.validate("booked", {"start": 5, "end": 1})


async def test_a_pydantic_model_runs_the_same_check() -> None:
    class PeriodModel(pydantic.BaseModel):
        start: int
        end: int

        @pydantic.model_validator(mode="after")
        def ordered(self) -> PeriodModel:
            if self.end < self.start:
                raise ValueError("end before start")
            return self

    validator = EventValidator()
    validator.register("booked", PeriodModel)
    with pytest.raises(ValidationError, match="end before start"):
        await validator.validate("booked", {"start": 5, "end": 1})
    assert (await validator.validate("booked", {"start": 1, "end": 5})).data == {
        "start": 1,
        "end": 5,
    }


@pydantic.dataclasses.dataclass
class Plain:
    name: str
    count: Annotated[int, pydantic.Field(gt=0)] = 1


async def test_a_pydantic_dataclass_without_validators_is_a_dataclass() -> None:
    validator = EventValidator()
    validator.register("plain", Plain)
    assert (await validator.validate("plain", {"name": "a"})).data == {"name": "a", "count": 1}
    with pytest.raises(ValidationError) as refused:
        await validator.validate("plain", {"name": 1, "count": 0})
    assert [problem.path for problem in refused.value.errors] == ["name", "count"]


@pydantic.dataclasses.dataclass(config=pydantic.ConfigDict(str_max_length=3))
class ShortNames:
    name: str


@dataclasses.dataclass
class Lowered:
    __pydantic_config__ = pydantic.ConfigDict(str_to_lower=True, str_strip_whitespace=True)
    name: str


@pydantic.dataclasses.dataclass(config=pydantic.ConfigDict(extra="ignore"))
class Tolerant:
    name: str


@pytest.mark.parametrize(
    ("schema", "named"),
    [
        (ShortNames, "sets str_max_length=3"),
        (Lowered, "sets str_to_lower=True, str_strip_whitespace=True"),
    ],
)
def test_a_pydantic_config_the_validator_does_not_apply_is_refused(
    schema: object, named: str
) -> None:
    # str_max_length=3 accepted any length; str_to_lower kept 'ABC' as given
    validator = EventValidator()
    with pytest.raises(ConfigurationError, match="only pydantic applies") as refused:
        validator.register("named", schema)
    assert named in str(refused.value)
    with pytest.raises(ValidationError, match="no schema is registered"):
        validator.check("named", {"name": "ABCDEF"})


def test_a_pydantic_config_extra_is_the_class_rule() -> None:
    validator = EventValidator()
    validator.register("named", Tolerant)
    assert validator.check("named", {"name": "a", "other": 1})[0] == {"name": "a"}


class Model(pydantic.BaseModel):
    amount: int


@dataclasses.dataclass
class HoldsAModel:
    line: Model


def test_a_pydantic_model_inside_a_dataclass_is_named_with_the_way_out() -> None:
    # it said "unsupported schema type in CustomType(cls=<class '...Model'>)"
    with pytest.raises(ConfigurationError) as refused:
        EventValidator().register("held", HoldsAModel)
    message = str(refused.value)
    assert "pydantic model Model inside a dataclass" in message
    assert "register a pydantic model at the top" in message
