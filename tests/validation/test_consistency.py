"""The msgspec fast path and the complete walk agree, on random schemas and data.

The walk is authoritative (it explains failures); the fast path must never accept data
the walk rejects, nor convert it differently. (With ``coerce=True`` msgspec's lax rules
decide and the walk only explains failures, so the property is checked in strict mode.)
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import itertools
import uuid
from typing import Annotated, Any, Literal, Optional, Union

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pepperpy.event import ConfigurationError, EventValidator, ValidationError
from pepperpy.event.validation._compiled import _KEEP as KEEP
from pepperpy.event.validation._fast import dec_hook
from pepperpy.event.validation._nodes import lists

REJECTED = object()

SCALAR_SCHEMAS = st.one_of(
    st.fixed_dictionaries(
        {"type": st.just("integer")},
        optional={"minimum": st.integers(-5, 5), "maximum": st.integers(-5, 50)},
    ),
    st.fixed_dictionaries(
        {"type": st.just("number")},
        optional={"exclusiveMinimum": st.integers(-5, 5), "multipleOf": st.sampled_from([1, 2])},
    ),
    st.fixed_dictionaries(
        {"type": st.just("string")},
        optional={
            "minLength": st.integers(0, 3),
            "maxLength": st.integers(3, 6),
            "pattern": st.sampled_from(["^a", "b$", "[0-9]"]),
            "format": st.sampled_from(["date-time", "date", "uuid"]),
        },
    ),
    st.just({"type": "boolean"}),
    st.just({"type": "null"}),
    st.builds(lambda v: {"enum": v}, st.lists(st.sampled_from(["a", "b", 1, 2, None]), min_size=1)),
    st.builds(  # enum next to type keywords: both apply
        lambda v, n: {"type": "string", "enum": v, "minLength": n},
        st.lists(st.sampled_from(["a", "ab", "abc123", 1.0]), min_size=1),
        st.integers(0, 3),
    ),
    st.builds(lambda v: {"const": v}, st.sampled_from([1, 1.0, "a", True, None, [1], {"a": 1}])),
    st.just({"type": ["string", "null"]}),
    st.sampled_from(  # keywords of a type without type: they apply to that type only
        [{"minLength": 2}, {"maximum": 3, "pattern": "^a"}, {"items": {"type": "integer"}}]
    ),
)


def _object(properties: dict[str, Any], required: list[str], closed: bool | None) -> Any:
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    names = [name for name in required if name in properties]
    if names:
        schema["required"] = names
    if closed is not None:
        schema["additionalProperties"] = not closed
    return schema


SCHEMAS = st.recursive(
    SCALAR_SCHEMAS,
    lambda inner: st.one_of(
        st.builds(
            lambda items, most: {"type": "array", "items": items, "maxItems": most},
            inner,
            st.integers(0, 4),
        ),
        st.builds(
            _object,
            st.dictionaries(st.sampled_from(["a", "b", "c", "d-e"]), inner, max_size=3),
            st.lists(st.sampled_from(["a", "b", "c", "d-e"]), max_size=3, unique=True),
            st.none() | st.booleans(),
        ),
        st.builds(lambda options: {"anyOf": options}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda options: {"allOf": options}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda options: {"oneOf": options}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda schema: {"not": schema}, inner),
        st.builds(
            lambda condition, then, otherwise: {"if": condition, "then": then, "else": otherwise},
            inner,
            inner,
            inner,
        ),
        st.builds(
            lambda schema, least: {"type": "array", "contains": schema, "minContains": least},
            inner,
            st.integers(0, 2),
        ),
        st.builds(  # object judges and patterns beside an object's keywords
            lambda obj, most, pattern: {
                **obj,
                "maxProperties": most,
                "patternProperties": {"^d": pattern},
                "propertyNames": {"maxLength": 3},
                "dependentRequired": {"a": ["b"]},
            },
            st.builds(
                _object,
                st.dictionaries(st.sampled_from(["a", "b"]), inner, max_size=2),
                st.lists(st.sampled_from(["a", "b"]), max_size=2, unique=True),
                st.none() | st.booleans(),
            ),
            st.integers(0, 3),
            inner,
        ),
        st.builds(
            lambda items: {"type": "array", "prefixItems": items},
            st.lists(inner, min_size=1, max_size=3),
        ),
        st.builds(  # 2020-12 prefixItems with items and counts
            lambda prefix, rest, least: {
                "type": "array",
                "prefixItems": prefix,
                "items": rest,
                "minItems": least,
            },
            st.lists(inner, min_size=1, max_size=2),
            inner | st.booleans(),
            st.integers(0, 3),
        ),
        st.builds(  # anyOf/$ref next to object keywords
            lambda obj, options: {**obj, "anyOf": options},
            st.builds(
                _object,
                st.dictionaries(st.sampled_from(["a", "b"]), inner, max_size=2),
                st.lists(st.sampled_from(["a", "b"]), max_size=2, unique=True),
                st.none() | st.booleans(),
            ),
            st.lists(inner, min_size=1, max_size=2),
        ),
    ),
    max_leaves=6,
)
SCHEMAS = SCHEMAS | st.builds(  # $ref next to other keywords (the $defs at the root)
    lambda target, extra: {"$defs": {"t": target}, "$ref": "#/$defs/t", **extra},
    SCHEMAS,
    st.sampled_from([{}, {"enum": ["a", 1, None]}, {"type": "string", "minLength": 2}]),
)
DATA = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-10, 60)
    | st.sampled_from([1.0, 2.0])
    | st.floats(-10, 60, allow_nan=False)
    | st.sampled_from(["a", "ab", "b", "abc123", "2024-01-01", "2024-01-01T00:00:00Z"])
    | st.just("6f1c0a52-3d3e-4b8c-9d1b-4a3f1c2b5e6d"),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(["a", "b", "c", "d-e", "x"]), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(SCHEMAS, DATA)
def test_fast_path_and_walk_agree(schema: Any, data: Any) -> None:
    validator = EventValidator(extra_fields="ignore")
    validator.register("x", schema)
    compiled = validator._latest["x"]
    try:
        walked = compiled.explain(data)
    except ValidationError:
        walked = REJECTED
    if compiled.fast is None:
        return
    try:
        fast = msgspec.convert(data, compiled.fast, strict=True, dec_hook=dec_hook)
    except msgspec.ValidationError:
        return  # the walk decides, whatever it says
    converted = lists(msgspec.to_builtins(fast, builtin_types=KEEP))
    assert walked is not REJECTED, f"fast path accepted what the walk rejects: {converted!r}"
    assert converted == walked


class Color(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    ONE = 1


PY_SCALARS = st.sampled_from(
    [
        int,
        str,
        float,
        bool,
        type(None),
        Any,
        dt.datetime,
        dt.date,
        uuid.UUID,
        decimal.Decimal,
        Color,
        Level,
        Literal["a", "b"],
        Literal[1, 2],
        Annotated[int, msgspec.Meta(ge=0)],
        Annotated[str, msgspec.Meta(max_length=2)],
        Annotated[float, msgspec.Meta(lt=5)],
        Annotated[list[int], msgspec.Meta(max_length=2)],
    ]
)
_classes = itertools.count()


def _dataclass(fields: list[Any]) -> Any:
    name = f"Generated{next(_classes)}"
    return dataclasses.make_dataclass(name, [(f"f{i}", t) for i, t in enumerate(fields)])


PY_TYPES = st.recursive(
    PY_SCALARS,
    lambda inner: st.one_of(
        st.builds(lambda t: list[t], inner),
        st.builds(lambda t: dict[str, t], inner),
        st.builds(lambda ts: tuple[tuple(ts)], st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda ts: Union[tuple(ts)], st.lists(inner, min_size=2, max_size=3)),  # noqa: UP007
        st.builds(lambda t: Optional[t], inner),  # noqa: UP045
        st.builds(_dataclass, st.lists(inner, min_size=1, max_size=3)),
    ),
    max_leaves=6,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(PY_TYPES, DATA)
def test_fast_path_and_walk_agree_on_python_types(annotation: Any, data: Any) -> None:
    validator = EventValidator(extra_fields="ignore")
    try:
        validator.register("x", dataclasses.make_dataclass("Top", [("v", annotation)]))
    except ConfigurationError:
        return  # e.g. a union msgspec cannot express: refused up front, never half-checked
    compiled = validator._latest["x"]
    try:
        walked = compiled.explain({"v": data})
    except ValidationError:
        walked = REJECTED
    if compiled.fast is None:
        return
    try:
        fast = msgspec.convert({"v": data}, compiled.fast, strict=True, dec_hook=dec_hook)
    except msgspec.ValidationError:
        return
    converted = lists(msgspec.to_builtins(fast, builtin_types=KEEP))
    assert walked is not REJECTED, f"fast path accepted what the walk rejects: {converted!r}"
    assert converted == walked
