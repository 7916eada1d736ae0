"""A problem's ``actual`` shows ``None`` (JSON ``null``) as ``None``, not ``NoneType None``."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from pepperpy.event import EventValidator, ValidationError


@dataclass
class Named:
    name: str


@pytest.mark.parametrize(
    "schema", [{"type": "object", "properties": {"name": {"type": "string"}}}, Named]
)
async def test_none_is_shown_as_none(schema: object) -> None:
    validator = EventValidator()
    validator.register("t.x", schema)
    for data, path in ((None, ""), ({"name": None}, "name")):
        with pytest.raises(ValidationError) as caught:
            await validator.validate("t.x", data)
        [problem] = caught.value.errors
        assert (problem.path, problem.actual) == (path, "None")
        assert "NoneType" not in str(caught.value)
