"""A field whose type the validator cannot take is refused at registration, naming it.

The error was msgspec's view of the type, ``unsupported schema type in
CustomType(cls=<class 'complex'>)``: neither the class nor the field it belongs to, so
in a model of many fields (or nested models) nothing said where to look.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import msgspec
import pytest

from pepperpy.event import ConfigurationError, EventValidator, ValidationError


class Reading:
    sensor: str
    value: complex


@dataclasses.dataclass
class Line:
    sku: str
    on_ship: Callable[[str], None]


@dataclasses.dataclass
class Order:
    order_id: str
    lines: list[Line]


class Sample(msgspec.Struct):
    at: int
    level: complex


@pytest.mark.parametrize(
    ("schema", "where", "what"),
    [
        (Reading, "Reading.value: ", "unsupported type complex"),
        (Order, "Order.lines: Line.on_ship: ", "unsupported type Callable"),
        (Sample, "Sample.level: ", "unsupported type complex"),
    ],
)
async def test_the_field_of_an_unsupported_type_is_named(
    schema: type, where: str, what: str
) -> None:
    validator = EventValidator()

    with pytest.raises(ConfigurationError) as caught:
        validator.schema("reading.taken")(schema)

    assert str(caught.value).startswith(where + what), str(caught.value)
    assert "CustomType" not in str(caught.value)
    with pytest.raises(ValidationError, match="no schema is registered"):
        await validator.validate("reading.taken", {})  # nothing was registered
