"""Where JSON Schema leans on other standards: exact ``multipleOf`` (cases from the
JSON-Schema-Test-Suite).

Every verdict is checked on both paths (the msgspec fast path never accepts what the
complete walk refuses).
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

import annotated_types
import msgspec
import pytest

from pepperpy.event import EventValidator, ValidationError

from .test_json_schema_semantics import _both_paths


def _verdict(schema: Any, data: Any) -> bool:
    return _both_paths(schema, data) is not ValidationError


# -- multipleOf: exact, on the decimal JSON writes -------------------------------------


@pytest.mark.parametrize(
    ("step", "valid", "invalid"),
    [
        (2, [10, 0, -4, 4.0, 2**63 - 2], [7, 2**63 - 1, 4.5]),
        (1.5, [0, 4.5, -3], [35, 4.4]),
        (0.0001, [0.0075, 1, 0], [0.00751]),  # decimal: 0.0075 / 0.0001 is 75
        (0.1, [0.3, 0.7, 1.1, 10**18, 1e300], [5e-11, 0.30000000000000004, 0.05]),
        (1, [3, 3.0, 1e20], [1.0000000001, 3.0000000005, 0.5]),
        (1.1, [6.6, 0], [6.6000000000000005]),  # msgspec (binary) accepts the latter
        (3, [9, 3e21, 2**63 + 1], [3.0 * 2**70]),  # that float reads 3541774862152234000000
        (1e-8, [12391239123], [1e-9]),
        (0.123456789, [0.123456789 * 0 + 0.246913578], [1e308]),
    ],
)
def test_multiple_of_is_exact(step: Any, valid: list[Any], invalid: list[Any]) -> None:
    schema = {"type": "number", "multipleOf": step}
    assert [_verdict(schema, v) for v in valid] == [True] * len(valid)
    assert [_verdict(schema, v) for v in invalid] == [False] * len(invalid)


def test_multiple_of_on_integers_is_exact() -> None:
    schema = {"type": "integer", "multipleOf": 0.5}
    assert _verdict(schema, 2**63 + 1) and _verdict(schema, 7)
    assert not _verdict({"type": "integer", "multipleOf": 0.123456789}, 10**18)
    assert not _verdict({"type": "integer", "multipleOf": 3}, 10**19 + 1)


@pytest.mark.parametrize(
    "marker", [msgspec.Meta(multiple_of=1), annotated_types.MultipleOf(1)], ids=repr
)
async def test_python_multiple_of_constraints_are_exact(marker: Any) -> None:
    quantity = dataclasses.make_dataclass("Quantity", [("n", Annotated[float, marker])])
    validator = EventValidator()
    validator.register("q", quantity)
    assert (await validator.validate("q", {"n": 3})).data == {"n": 3.0}
    with pytest.raises(ValidationError, match="multiple of 1"):
        await validator.validate("q", {"n": 1.0000000001})


async def test_multiple_of_keeps_the_fast_path_for_the_rest_of_the_data() -> None:
    validator = EventValidator()
    validator.register(
        "price",
        {
            "type": "object",
            "properties": {"amount": {"type": "number", "multipleOf": 0.01}, "sku": {}},
            "required": ["amount"],
        },
    )
    compiled = validator._latest["price"]
    assert compiled.fast is not None
    assert compiled.check({"amount": 0.07, "sku": "a"}) == {"amount": 0.07, "sku": "a"}
    with pytest.raises(ValidationError):
        compiled.check({"amount": 0.071})
