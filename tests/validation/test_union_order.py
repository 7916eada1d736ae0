"""A union converts a value the same way on msgspec's fast path and on the walk.

The walk gives a value to the first option that takes it; msgspec picks an option by the
value's type. For ``Decimal | float`` the walk made 1.5 a ``Decimal`` and msgspec kept a
float, so ``check()`` (fast path) and the explanation (walk) disagreed (found by the
property test in test_consistency.py). Such unions now use the walk for valid data too.
"""

from __future__ import annotations

import dataclasses
import decimal
from typing import Any

import pytest

from pepperpy.event import EventValidator


def compiled(annotation: Any) -> Any:
    validator = EventValidator()
    validator.register("x", dataclasses.make_dataclass("Top", [("v", annotation)]))
    return validator._latest["x"]


@pytest.mark.parametrize(
    ("annotation", "value", "expected"),
    [
        (decimal.Decimal | float, 1.5, decimal.Decimal("1.5")),
        (decimal.Decimal | int, 3, decimal.Decimal(3)),
        (dict[str, decimal.Decimal | Any], {"a": 1.5}, {"a": decimal.Decimal("1.5")}),
        (float | Any, 3, 3.0),
    ],
)
def test_the_first_option_taking_a_value_converts_it_on_both_paths(
    annotation: Any, value: Any, expected: Any
) -> None:
    schema = compiled(annotation)
    checked = schema.check({"v": value})["v"]
    assert checked == expected and type(checked) is type(expected)
    assert schema.explain({"v": value}) == {"v": expected}


# (a Decimal is checked through msgspec's decoding hook, which msgspec allows in no union
# but with None: float | Decimal is walked, see test_schema_values)
@pytest.mark.parametrize("annotation", [int | float, float | None, Any | int])
def test_unions_msgspec_reads_in_the_same_order_keep_the_fast_path(annotation: Any) -> None:
    schema = compiled(annotation)
    assert schema.fast is not None
    assert schema.check({"v": 1.5}) == schema.explain({"v": 1.5})
