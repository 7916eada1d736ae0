"""Property-based: random JSON-like input never raises anything but ValidationError."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import enum
import math
from typing import Annotated, Any, Literal, NotRequired, TypedDict

import msgspec
import pydantic
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pepperpy.event import Event, EventValidator, ValidationError


class Level(enum.Enum):
    LOW = "low"
    HIGH = "high"


@dataclasses.dataclass
class Inner:
    x: int
    y: list[float] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Dataclass:
    name: Annotated[str, msgspec.Meta(min_length=1)]
    count: int
    ratio: float | None
    level: Level
    kind: Literal["a", "b"]
    inner: Inner
    when: dt.datetime | None = None
    tags: dict[str, int] = dataclasses.field(default_factory=dict)
    blob: Any = None


class Typed(TypedDict):
    id: int
    labels: list[str]
    note: NotRequired[str | None]


class Struct(msgspec.Struct):
    amount: Annotated[float, msgspec.Meta(ge=0)]
    items: list[Inner]


class Model(pydantic.BaseModel):
    age: int = pydantic.Field(ge=0)
    emails: list[str]
    score: float = 0.0
    extra: Any = None


JSON_SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "score": {"type": "number", "minimum": 0},
        "choices": {"type": "array", "items": {"enum": ["x", "y", 1, None]}},
        "child": {"anyOf": [{"type": "null"}, {"$ref": "#/$defs/child"}]},
    },
    "required": ["id"],
    "$defs": {"child": {"type": "object", "properties": {"n": {"type": "integer"}}}},
}

VALIDATOR = EventValidator()
VALIDATOR.register("dataclass", Dataclass)
VALIDATOR.register("typed", Typed)
VALIDATOR.register("struct", Struct)
VALIDATOR.register("model", Model)
VALIDATOR.register("json", JSON_SCHEMA)
LENIENT = EventValidator(unknown_types="pass", extra_fields="allow", coerce=True)
LENIENT.register("dataclass", Dataclass)
LENIENT.register("typed", Typed)
LENIENT.register("struct", Struct)
LENIENT.register("model", Model)
LENIENT.register("json", JSON_SCHEMA)

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8)
    | st.sampled_from(["low", "a", "2024-01-01T00:00:00Z", "x", ""])
)
KEYS = st.sampled_from(
    ["name", "count", "ratio", "level", "kind", "inner", "x", "y", "when", "tags", "blob"]
    + ["id", "labels", "note", "amount", "items", "age", "emails", "score", "choices", "child"]
    + ["extra"]
) | st.text(max_size=5)
JSON_LIKE = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(KEYS, children, max_size=6)
        | st.dictionaries(st.integers(), children, max_size=2)
    ),
    max_leaves=25,
)


def run(validator: EventValidator, event_type: str, data: Any) -> None:
    try:
        event = asyncio.run(validator.validate(event_type, data))
    except ValidationError as exc:
        assert exc.errors, "a ValidationError lists its problems"
        for problem in exc.errors:
            assert isinstance(problem.path, str) and problem.message
        return
    assert isinstance(event, Event)
    assert _finite(event.data)


def _finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _finite(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    return True


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(["dataclass", "typed", "struct", "model", "json", "unknown"]),
    JSON_LIKE,
)
def test_random_input_raises_only_validation_error(event_type: str, data: Any) -> None:
    run(VALIDATOR, event_type, data)
    run(LENIENT, event_type, data)


@settings(max_examples=60, deadline=None)
@given(
    name=st.text(min_size=1, max_size=5),
    count=st.integers(min_value=-(2**63), max_value=2**63 - 1),
    ratio=st.none() | st.floats(allow_nan=False, allow_infinity=False),
    level=st.sampled_from(["low", "high"]),
    kind=st.sampled_from(["a", "b"]),
    x=st.integers(min_value=-1000, max_value=1000),
)
def test_valid_input_is_accepted(
    name: str, count: int, ratio: float | None, level: str, kind: str, x: int
) -> None:
    data = {
        "name": name,
        "count": count,
        "ratio": ratio,
        "level": level,
        "kind": kind,
        "inner": {"x": x},
    }
    event = asyncio.run(VALIDATOR.validate("dataclass", data))
    assert event.data["inner"] == {"x": x, "y": []}
    assert event.data["count"] == count and event.data["level"] == level
