"""The fast path's generated attribute names never merge two fields.

A property that is no plain attribute name (``_id``, ``class``, ``a-b``) gets a generated
attribute in the msgspec Struct; a real property with that very name (``field_0``) once
made msgspec keep a single field, so ``_id`` was checked against ``field_0``'s type and
``field_0`` was never required.
"""

from __future__ import annotations

from typing import Any, TypedDict

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pepperpy.event import EventValidator, ValidationError
from pepperpy.event.validation._fast import dec_hook

SCHEMA = {
    "type": "object",
    "properties": {"_id": {"type": "integer"}, "field_0": {"type": "string"}},
    "required": ["_id", "field_0"],
}


def _problems(validator: EventValidator, data: Any) -> set[tuple[str, str]]:
    with pytest.raises(ValidationError) as info:
        validator.check("t.x", data)
    return {(p.path, p.message) for p in info.value.errors}


@pytest.mark.parametrize("extra", ["forbid", "ignore"])
async def test_a_property_named_like_a_generated_attribute_keeps_its_own_type(
    extra: Any,
) -> None:
    validator = EventValidator(extra_fields=extra)
    validator.register("t.x", SCHEMA)
    assert _problems(validator, {"_id": "x"}) == {
        ("_id", "wrong type"),
        ("field_0", "field required"),
    }
    assert _problems(validator, {"_id": 1}) == {("field_0", "field required")}
    assert validator.check("t.x", {"_id": 1, "field_0": "s"}) == (
        {"_id": 1, "field_0": "s"},
        1,
    )
    event = await validator.validate("t.x", {"_id": 1, "field_0": "s"})
    assert event.data == {"_id": 1, "field_0": "s"}
    with pytest.raises(ValidationError):
        await validator.validate("t.x", {"_id": "x", "field_0": "s"})


def test_optional_properties_named_like_generated_attributes() -> None:
    validator = EventValidator()
    schema = {
        "type": "object",
        "properties": {
            "_a": {"type": "integer"},
            "field_0": {"type": "string"},
            "field_0_2": {"type": "boolean"},
            "class": {"type": "null"},
            "field_3": {"type": "integer"},
        },
    }
    validator.register("t.x", schema)
    good = {"_a": 1, "field_0": "s", "field_0_2": True, "class": None, "field_3": 4}
    assert validator.check("t.x", good) == (good, 1)
    assert _problems(validator, {"_a": "x"}) == {("_a", "wrong type")}
    assert _problems(validator, {"class": 1}) == {("class", "wrong type")}


class _Record(TypedDict):
    _id: int
    field_0: str


def test_a_typeddict_with_a_field_named_like_a_generated_attribute() -> None:
    validator = EventValidator(extra_fields="ignore")
    validator.register("t.x", _Record)
    assert _problems(validator, {"_id": "x"}) == {
        ("_id", "wrong type"),
        ("field_0", "field required"),
    }
    assert validator.check("t.x", {"_id": 1, "field_0": "s"}) == ({"_id": 1, "field_0": "s"}, 1)


NAMES = st.sampled_from(["_x", "field_0", "field_1", "field_1_2", "class", "a-b", "a"])
LEAVES = st.sampled_from(
    [{"type": "integer"}, {"type": "string"}, {"type": "boolean"}, {"type": "null"}, {}]
)
VALUES = st.sampled_from([1, "s", True, None, 2.5])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(NAMES, LEAVES, min_size=1, max_size=5),
    st.data(),
    st.sampled_from(["forbid", "ignore"]),
)
def test_fast_path_never_accepts_what_the_walk_refuses(
    properties: dict[str, Any], draw: Any, extra: Any
) -> None:
    required = draw.draw(st.lists(st.sampled_from(sorted(properties)), unique=True))
    data = draw.draw(st.dictionaries(NAMES, VALUES, max_size=5))
    validator = EventValidator(extra_fields=extra)
    validator.register("t.x", {"type": "object", "properties": properties, "required": required})
    compiled = validator._latest["t.x"]
    assert compiled.fast is not None  # the case under test: the fast path decides
    try:
        walked = compiled.explain(data)
    except ValidationError:
        walked = None
    try:
        fast = msgspec.convert(data, compiled.fast, strict=True, dec_hook=dec_hook)
    except msgspec.ValidationError:
        return  # the walk decides
    assert walked is not None, f"the fast path accepted {data!r}, which the walk refuses"
    assert msgspec.to_builtins(fast) == walked
