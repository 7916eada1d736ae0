"""Problems name stored (frozen) data by its plain type, as for a payload given as is."""

from __future__ import annotations

from typing import Any

import pytest

from pepperpy.event import Event, EventValidator, ValidationError

_SCHEMA = {"type": "object", "properties": {"a": {"type": "string"}}}


async def _actual(data: Any) -> str:
    validator = EventValidator()
    validator.register("t.x", _SCHEMA)
    with pytest.raises(ValidationError) as caught:
        await validator.validate("t.x", Event("t.x", data).data)  # Event() freezes the data
    (problem,) = caught.value.errors
    return problem.actual


@pytest.mark.parametrize(
    ("data", "shown"),
    [
        ([1, 2], "list [1, 2]"),
        ({"a": {"b": 1}}, "dict {'b': 1}"),
        ({"a": [1]}, "list [1]"),
    ],
)
async def test_frozen_data_is_named_list_and_dict(data: Any, shown: str) -> None:
    assert await _actual(data) == shown
