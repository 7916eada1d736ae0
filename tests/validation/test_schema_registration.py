"""Class schemas with bad constraints are refused at registration with a
``ConfigurationError`` naming them, not with an error from deep inside when data is
checked."""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import Annotated, Any

import annotated_types as at
import pytest

from pepperpy.event import ConfigurationError, EventValidator


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
