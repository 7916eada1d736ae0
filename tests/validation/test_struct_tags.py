"""msgspec Struct options that change a Struct's JSON form.

A tagged Struct (``tag=True``, ``tag=...``, ``tag_field=...``) is written by msgspec with
its tag, and a union of tagged Structs is told apart by it: the validator refused the
tag as an unexpected field, so msgspec's own encoding of a valid Struct was invalid, and
what it accepted (no tag) did not decode back into a union. An ``array_like`` Struct is
written as an array, which the validator refused while taking an object msgspec refuses.
"""

from __future__ import annotations

import msgspec
import pytest

from pepperpy.event import ConfigurationError, EventValidator, ValidationError


class Card(msgspec.Struct, tag=True):
    last4: str


class Transfer(msgspec.Struct, tag="transfer", tag_field="kind"):
    iban: str


class Wire(msgspec.Struct, tag="wire", tag_field="kind"):
    iban: str
    swift: str = "none"


class Paid(msgspec.Struct):
    amount: int
    method: Transfer | Wire
    cards: list[Card] = []


async def test_a_tagged_struct_takes_what_msgspec_writes() -> None:
    validator = EventValidator()
    validator.register("card", Card)
    written = msgspec.to_builtins(Card("4242"))
    assert written == {"type": "Card", "last4": "4242"}
    event = await validator.validate("card", written)
    assert event.data == written
    # without its tag: filled in, as msgspec writes it
    assert (await validator.validate("card", {"last4": "4242"})).data == written
    with pytest.raises(ValidationError) as refused:
        await validator.validate("card", {"type": "Wire", "last4": "4242"})
    assert [(p.path, p.expected) for p in refused.value.errors] == [("type", "one of 'Card'")]


async def test_a_union_of_tagged_structs_is_told_apart_by_its_tag() -> None:
    validator = EventValidator()
    validator.register("paid", Paid)
    for method in (Transfer("DE01"), Wire("DE01", "ABCD")):
        written = msgspec.to_builtins(Paid(5, method, [Card("1111")]))
        event = await validator.validate("paid", written)
        assert event.data == written
        assert msgspec.convert(event.data, Paid) == Paid(5, method, [Card("1111")])
        assert validator.check("paid", written)[0] == written
    # the tag decides: a wire's fields under the transfer tag are refused
    with pytest.raises(ValidationError):
        await validator.validate(
            "paid", {"amount": 5, "method": {"kind": "transfer", "iban": "x", "swift": "y"}}
        )
    with pytest.raises(ValidationError):
        await validator.validate("paid", {"amount": 5, "method": {"kind": "cash", "iban": "x"}})


def test_an_array_like_struct_is_refused_at_registration() -> None:
    class Point(msgspec.Struct, array_like=True):
        x: int
        y: int

    validator = EventValidator()
    with pytest.raises(ConfigurationError, match="Point is array_like"):
        validator.register("point", Point)
    with pytest.raises(ValidationError, match="no schema is registered"):
        validator.check("point", [1, 2])
