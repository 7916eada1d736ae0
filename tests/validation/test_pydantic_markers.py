"""pydantic markers on dataclasses, TypedDicts and plain classes: read as pydantic reads
them (public attributes of ``FieldInfo``; pattern meaning; set items)."""

from __future__ import annotations

import dataclasses
import json
from typing import Annotated, Any

import pytest

from pepperpy.event import EventValidator, ValidationError

pydantic = pytest.importorskip("pydantic")


def _verdicts(cls: Any, data: Any) -> tuple[bool, bool]:
    """(ours, pydantic's strict JSON-mode verdict) on ``data`` for ``cls``."""
    validator = EventValidator()
    validator.register("x", cls)
    try:
        validator.check("x", data)
        ours = True
    except ValidationError:
        ours = False
    try:
        pydantic.TypeAdapter(cls).validate_json(json.dumps(data), strict=True)
        theirs = True
    except pydantic.ValidationError:
        theirs = False
    return ours, theirs


@pytest.mark.parametrize(("value", "valid"), [(0, False), (1, True)])
def test_a_field_with_alias_none_is_no_alias(value: int, valid: bool) -> None:
    # Field(alias=None) sets no alias (pydantic reads the field by its name), but its
    # private _attributes_set lists "alias": registration refused it as an alias
    cls = dataclasses.make_dataclass("A", [("a", Annotated[int, pydantic.Field(alias=None, gt=0)])])
    assert _verdicts(cls, {"a": value}) == (valid, valid)
