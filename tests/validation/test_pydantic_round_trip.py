"""pydantic models whose data did not validate again, or lost what was given.

Validated data is the model's dump by alias. A key pydantic does not read was let
through the extra-field check and then ignored by pydantic, so its value was replaced by
the default (``{"c": 3}`` became ``{"c": 0}`` for a field read as ``C``); a field written
under another key than it is read (``serialization_alias``, a ``validation_alias``
alone), a required field excluded from the dump, and a computed field (written, then
refused as an unexpected field) made data that ``validate()`` refused the next time."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pydantic
import pytest

from pepperpy.event import ConfigurationError, EventValidator, ValidationError


class ReadAsC(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(populate_by_name=True)
    c: int = pydantic.Field(validation_alias="C", default=0)


class OnlyAlias(pydantic.BaseModel):
    c: int = pydantic.Field(alias="C", default=0)


async def test_a_key_the_model_does_not_read_is_refused_not_lost() -> None:
    validator = EventValidator()
    validator.register("only.alias", OnlyAlias)
    with pytest.raises(ValidationError) as refused:  # was {"C": 0}: the 3 was lost
        await validator.validate("only.alias", {"c": 3})
    assert [(p.path, p.message) for p in refused.value.errors] == [("c", "unexpected field")]
    assert (await validator.validate("only.alias", {"C": 3})).data == {"C": 3}
    validator.register("read.as.c", ReadAsC)
    for given in ({"c": 3}, {"C": 3}):
        event = await validator.validate("read.as.c", given)
        assert event.data == {"c": 3}
        assert (await validator.validate("read.as.c", event.data)).data == {"c": 3}


class WrittenAsB(pydantic.BaseModel):
    b: int = pydantic.Field(serialization_alias="B", default=0)


class ReadOnlyAsC(pydantic.BaseModel):
    c: int = pydantic.Field(validation_alias="C")


class Hidden(pydantic.BaseModel):
    secret: int = pydantic.Field(exclude=True)


class Inner(pydantic.BaseModel):
    q: int = pydantic.Field(serialization_alias="Q")


class Outer(pydantic.BaseModel):
    items: list[Inner] | None = None


@pytest.mark.parametrize(
    ("model", "named"),
    [
        (WrittenAsB, "field 'b': the model writes it as 'B' but reads it as ['b']"),
        (ReadOnlyAsC, "field 'c': the model writes it as 'c' but reads it as ['C']"),
        (Hidden, "field 'secret': it is required but excluded"),
        (Outer, "pydantic model Inner, field 'q'"),  # nested
    ],
)
def test_a_model_whose_data_would_not_validate_again_is_refused(
    model: type[pydantic.BaseModel], named: str
) -> None:
    validator = EventValidator(extra_fields="ignore")
    with pytest.raises(ConfigurationError) as refused:
        validator.register("changed", model)
    assert named in str(refused.value)


class Order(pydantic.BaseModel):
    price: int
    quantity: int

    @pydantic.computed_field  # type: ignore[prop-decorator]
    @property
    def total(self) -> int:
        return self.price * self.quantity


async def test_a_computed_field_is_written_and_recomputed() -> None:
    validator = EventValidator()
    validator.register("order.placed", Order)
    event = await validator.validate("order.placed", {"price": 2, "quantity": 3})
    assert event.data == {"price": 2, "quantity": 3, "total": 6}
    assert (await validator.validate("order.placed", event.data)).data == event.data
    # a total given is not taken as it is: it is recomputed
    stale = {"price": 2, "quantity": 4, "total": 6}
    assert (await validator.validate("order.placed", stale)).data["total"] == 8


class Line(pydantic.BaseModel):
    sku: str
    parts: list[Line] = []


class Loose(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="allow")
    note: str
    line: Line | None = None


class Cart(pydantic.BaseModel):
    first: Line
    lines: list[Line] = []
    by_sku: dict[str, Line] = {}
    loose: Loose | None = None


async def test_a_nested_model_refuses_keys_it_does_not_declare() -> None:
    """pydantic ignores them there (its default), so the value given was dropped, while
    the same key at the top, or in a nested dataclass, is refused."""
    validator = EventValidator()
    validator.register("cart", Cart)
    with pytest.raises(ValidationError) as refused:
        await validator.validate(
            "cart",
            {
                "first": {"sku": "a", "qty": 2, "parts": [{"sku": "b", "qty": 1}]},
                "lines": [{"sku": "c", "qty": 3}],
                "by_sku": {"d": {"sku": "d", "qty": 4}},
                "loose": {"note": "kept", "extra": 1, "line": {"sku": "e", "qty": 5}},
            },
        )
    assert [(p.path, p.message) for p in refused.value.errors] == [
        ("first.qty", "unexpected field"),
        ("first.parts[0].qty", "unexpected field"),
        ("lines[0].qty", "unexpected field"),
        ("by_sku['d'].qty", "unexpected field"),
        ("loose.line.qty", "unexpected field"),  # a model setting extra keeps its rule
    ]
    data = {"first": {"sku": "a"}, "loose": {"note": "n", "extra": 1}}
    event = await validator.validate("cart", data)
    assert event.data["loose"] == {"note": "n", "line": None, "extra": 1}
    # a tolerant reader drops them, as pydantic does
    tolerant = EventValidator(extra_fields="ignore")
    tolerant.register("cart", Cart)
    assert (await tolerant.validate("cart", {"first": {"sku": "a", "qty": 2}})).data["first"] == {
        "sku": "a",
        "parts": [],
    }


class Holder(pydantic.BaseModel):
    seq: Sequence[Line] = ()
    by_name: Mapping[str, Line] = {}


async def test_abstract_containers_of_nested_models_refuse_undeclared_keys_too() -> None:
    validator = EventValidator()
    validator.register("held", Holder)
    with pytest.raises(ValidationError) as refused:
        validator.check(
            "held", {"seq": [{"sku": "a", "x": 1}], "by_name": {"k": {"sku": "b", "y": 2}}}
        )
    assert [p.path for p in refused.value.errors] == ["seq[0].x", "by_name['k'].y"]
