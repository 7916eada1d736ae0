"""Differential tests: our verdicts on class schemas against pydantic v2 (strict, JSON mode).

Hypothesis builds dataclasses (``make_dataclass``) and TypedDicts (functional form) whose
fields use the documented types (docs/validation.md, "Schema kinds"), annotated-types
constraints, defaults and ``NotRequired``, and JSON-like instances, many derived from the
schema so that they are valid.

The oracle is ``TypeAdapter(cls).validate_json(json.dumps(data), strict=True)``, with
``extra`` set on every generated class (``__pydantic_config__``) as the validator's
``extra_fields`` policy says. JSON mode because docs/validation.md ("Rules") says: "What
is accepted is the JSON representation of types JSON lacks: RFC 3339 strings for
`datetime`/`date`/`time`, strings for `UUID` and `Decimal` ... and ints where a float is
expected", which is what pydantic's strict JSON mode accepts (its strict Python mode
refuses a date string for a ``date``). Our verdict (accepted / ``ValidationError``) must be
pydantic's; for valid data, ``Event.data`` must equal pydantic's result dumped in Python
mode with enum members as values and tuples as lists ("Validated data is converted to its
JSON-friendly Python form ... enum members stored as their values, sets and tuples as
lists").

Documented deviations kept out of the comparison, each where it is drawn:

* only instances pydantic's JSON parser and ours read alike are drawn: strings for
  ``datetime``/``date``/``UUID`` in their canonical forms (docs/validation.md, "Rules":
  "A `UUID` field takes the hyphenated form or 32 hex digits (msgspec's reading)";
  "a date alone, a week date ... or the compact `20240501T100000` is refused, as msgspec
  refuses it", where pydantic has readings of its own);
* ``Decimal`` fields get ints and decimal strings only (a float is written by JSON as
  its repr, which both read alike, but pydantic's strict mode refuses a float for a
  ``Decimal``, and docs/validation.md lists "strings for `UUID` and `Decimal`" and
  "decimal (number or numeric str)" as what we accept).

Set ``PEPPERPY_DIFF_EXAMPLES`` to run many more examples when hunting bugs.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import itertools
import json
import os
import types
import typing
import uuid
from decimal import Decimal
from typing import Annotated, Any, Literal, Optional, Union

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pepperpy.event import ConfigurationError, EventValidator, ValidationError

pydantic = pytest.importorskip("pydantic")
annotated_types = pytest.importorskip("annotated_types")
typing_extensions = pytest.importorskip("typing_extensions")

EXAMPLES = int(os.environ.get("PEPPERPY_DIFF_EXAMPLES", "300"))
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

_names = itertools.count()


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


KEYS = ["a", "b", "c", "d"]
ALPHABET = "ab1x \u00e9\n"
# docs/validation.md: "`pydantic.Field(pattern=...)` ... [has] pydantic's meaning"
# (its Rust regex: `$` is the end of the string, not before a final newline)
PATTERNS = ["^a", "b", "^[ab]+", "a|1", "^x", "[0-9]", "ab?1", "^[^a]", "a$", "^[ab1]+$", "^\\s"]
floats = st.integers(-40, 40).map(lambda i: i / 4)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-6, 12),
    floats,
    st.text(ALPHABET, max_size=4),
    st.sampled_from(["red", "green", "2024-05-01", "2024-05-01T10:00:00Z", "1.5"]),
    # not "10:00": docs/validation.md ("Rules") takes "RFC 3339 strings for
    # `datetime`/`date`/`time`" (seconds required), pydantic also reads HH:MM
    st.sampled_from([str(uuid.UUID(int=7)), "2024-05-01T10:00:00", "10:00:00"]),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(KEYS), inner, max_size=3)
    ),
    max_leaves=8,
)


# A "spec" is (annotation, strategy of JSON values meant to be valid for it).
Spec = tuple[Any, st.SearchStrategy[Any]]

SCALARS: list[Spec] = [
    (int, st.integers(-6, 12)),
    (float, st.one_of(floats, st.integers(-3, 3))),
    (str, st.text(ALPHABET, max_size=4)),
    (bool, st.booleans()),
    (type(None), st.none()),
    (Color, st.sampled_from(["red", "green"])),
    (Level, st.sampled_from([1, 2])),
    (Literal["a", "b"], st.sampled_from(["a", "b"])),
    (Literal[1, 2, "x"], st.sampled_from([1, 2, "x"])),
    (dt.datetime, st.sampled_from(["2024-05-01T10:00:00Z", "2024-05-01T10:00:00+02:00"])),
    (dt.date, st.sampled_from(["2024-05-01", "1999-12-31"])),
    (uuid.UUID, st.sampled_from([str(uuid.UUID(int=7)), "12345678-1234-5678-1234-567812345678"])),
    (Literal[True, 0], st.sampled_from([True, 0])),
    (Any, json_values),
    (Annotated[float, annotated_types.MultipleOf(0.5)], st.integers(-4, 4).map(lambda i: i / 2)),
    (
        Annotated[Decimal, annotated_types.Gt(-2), annotated_types.Le(Decimal("5.5"))],
        st.sampled_from([0, 5, "5.5", "-1.75"]),
    ),
    (dt.time, st.sampled_from(["10:00:00", "10:00:00Z", "23:59:59.5+02:00"])),
    (Decimal, st.one_of(st.integers(-5, 5), st.sampled_from(["1.5", "-0.25", "10"]))),
]


def _constrained() -> st.SearchStrategy[Spec]:
    at = annotated_types
    ints = st.builds(
        lambda lo, hi, step: (
            Annotated[int, at.Ge(lo), at.Lt(hi), at.MultipleOf(step)],
            st.integers(lo, hi - 1).filter(lambda v: v % step == 0),
        ),
        st.integers(-3, 3),
        st.integers(4, 9),
        st.sampled_from([1, 2, 3]),
    )
    flts = st.builds(
        lambda lo, hi: (Annotated[float, at.Gt(lo), at.Le(hi)], st.floats(lo + 0.25, hi)),
        st.integers(-3, 3),
        st.integers(4, 9),
    )
    strs = st.builds(
        lambda lo, hi: (
            Annotated[str, at.MinLen(lo), at.MaxLen(hi)],
            st.text(ALPHABET, min_size=lo, max_size=hi),
        ),
        st.integers(0, 2),
        st.integers(2, 4),
    )
    lists = st.builds(
        lambda lo: (
            Annotated[list[int], at.MinLen(lo)],
            st.lists(st.integers(-6, 12), min_size=lo, max_size=4),
        ),
        st.integers(0, 2),
    )
    patterns = st.sampled_from(PATTERNS).map(
        lambda p: (Annotated[str, pydantic.Field(pattern=p)], st.from_regex(p).filter(_text))
    )
    return st.one_of(ints, flts, strs, lists, patterns)


def _text(value: str) -> bool:
    return all(c in ALPHABET for c in value) and len(value) < 6


def _default_ok(annotation: Any, value: Any) -> bool:
    """Defaults are Python values, used as they are by pydantic (it does not validate
    them): only those whose JSON form is the value itself (an int default of a float
    field is filled in as a float by us, as the int it is by pydantic)."""
    if annotation in (int, str, bool):
        return type(value) is annotation
    return annotation is float and type(value) is float


def _extend(inner: st.SearchStrategy[Spec]) -> st.SearchStrategy[Spec]:
    return st.one_of(
        inner.map(lambda s: (Optional[s[0]], st.one_of(st.none(), s[1]))),  # noqa: UP045
        inner.map(lambda s: (list[s[0]], st.lists(s[1], max_size=3))),  # type: ignore[valid-type]
        inner.map(
            lambda s: (
                dict[str, s[0]],  # type: ignore[valid-type]
                st.dictionaries(st.sampled_from(KEYS), s[1], max_size=3),
            )
        ),
        inner.map(lambda s: (tuple[s[0], ...], st.lists(s[1], max_size=3))),  # type: ignore[valid-type]
        st.tuples(inner, inner).map(
            lambda p: (tuple[p[0][0], p[1][0]], st.tuples(p[0][1], p[1][1]).map(list))
        ),
        st.tuples(inner, inner).map(
            lambda p: (Union[p[0][0], p[1][0]], st.one_of(p[0][1], p[1][1]))  # noqa: UP007
        ),
        SET_ITEMS.map(lambda s: (set[s[0]], st.lists(s[1], max_size=3))),  # type: ignore[misc]
        _class(inner),
    )


LEAVES: st.SearchStrategy[Spec] = st.one_of(st.sampled_from(SCALARS), _constrained())
SET_ITEMS: st.SearchStrategy[Spec] = st.sampled_from(
    # 1 == 1.0 (see _compare); an Any item may be a list, which a set cannot hold: both
    # refuse it (set_item_not_hashable)
    [s for s in SCALARS if s[0] not in (float, Decimal)]
)


@st.composite
def _class(draw: st.DrawFn, inner: st.SearchStrategy[Spec]) -> Spec:
    """A dataclass or TypedDict of 1-4 fields, and a strategy of valid objects for it."""
    fields = draw(
        st.lists(
            st.tuples(st.sampled_from(KEYS), inner),
            min_size=1,
            max_size=4,
            unique_by=lambda f: f[0],
        )
    )
    name = f"C{next(_names)}"
    required: dict[str, bool] = {}
    if draw(st.booleans()):
        # keyword-only, so that any field may have a default
        entries: list[Any] = []
        for key, (annotation, values) in fields:
            default = draw(values) if draw(st.integers(0, 2)) == 0 else None
            if isinstance(default, list) and typing.get_origin(annotation) is list:
                items = list(default)
                factory = dataclasses.field(default_factory=lambda items=items: list(items))
                entries.append((key, annotation, factory))
                required[key] = False
            elif default is None and type(None) in typing.get_args(annotation):
                entries.append((key, annotation, dataclasses.field(default=None)))
                required[key] = False
            elif default is not None and _default_ok(annotation, default):
                if draw(st.booleans()):  # read as pydantic reads it, constraints too
                    bound = (
                        pydantic.Field(default=default, ge=default)
                        if type(default) is int
                        else pydantic.Field(default=default)
                    )
                    entries.append((key, annotation, dataclasses.field(default=bound)))
                else:
                    entries.append((key, annotation, dataclasses.field(default=default)))
                required[key] = False
            else:
                entries.append((key, annotation))
                required[key] = True
        cls: Any = dataclasses.make_dataclass(name, entries, kw_only=True)
    else:
        total = draw(st.booleans())
        annotations: dict[str, Any] = {}
        for key, (annotation, _) in fields:
            marker = draw(st.sampled_from([None, "Required", "NotRequired"]))
            if marker is None:
                annotations[key] = annotation
                required[key] = total
            else:
                annotations[key] = getattr(typing_extensions, marker)[annotation]
                required[key] = marker == "Required"
        cls = typing_extensions.TypedDict(name, annotations, total=total)  # type: ignore[operator]
    cls.__pydantic_config__ = pydantic.ConfigDict(extra="forbid")
    values = dict(fields)

    @st.composite
    def objects(draw: st.DrawFn) -> dict[str, Any]:
        return {key: draw(values[key][1]) for key in values if required[key] or draw(st.booleans())}

    return cls, objects()


SPECS: st.SearchStrategy[Spec] = st.recursive(LEAVES, _extend, max_leaves=6)


class _Drawn(tuple[Any, Any]):
    """A generated class and its valid objects, shown as the class written out."""

    def __repr__(self) -> str:
        return _show(self[0])


@st.composite
def class_schemas(draw: st.DrawFn) -> Spec:
    """A generated class (short repr: hypothesis would show every strategy inside)."""
    return _Drawn(draw(_class(SPECS)))


@st.composite
def mutated(draw: st.DrawFn, value: Any) -> Any:
    """``value`` with one part (maybe) replaced, dropped or added."""
    if isinstance(value, dict) and value and draw(st.booleans()):
        key = draw(st.sampled_from(sorted(value)))
        choice = draw(st.integers(0, 2))
        out = dict(value)
        if choice == 0:
            del out[key]
        elif choice == 1:
            out[key] = draw(mutated(value[key]))
        else:
            out[draw(st.sampled_from([*KEYS, "zz"]))] = draw(json_values)
        return out
    if isinstance(value, list) and value and draw(st.booleans()):
        index = draw(st.integers(0, len(value) - 1))
        out_list = list(value)
        out_list[index] = draw(mutated(value[index]))
        return out_list
    return draw(json_values)


def _plain(value: Any) -> Any:
    """pydantic's or our output as comparable plain data (see the module docstring)."""
    if isinstance(value, enum.Enum):
        return _plain(value.value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, dict) or hasattr(value, "items"):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return value  # 1.0 == 1 in Python anyway; kept apart from int by the type check
    return value


def _ours(cls: Any, data: Any, extra: str) -> tuple[bool, Any]:
    validator = EventValidator(extra_fields=extra)  # type: ignore[arg-type]
    validator.register("x", cls)
    try:
        out, _ = validator.check("x", data)
    except ValidationError:
        return False, None
    return True, out


def _items(value: Any, shape: Any) -> int:
    """How many array items ``value`` holds, at every depth, under the keys ``shape``
    (the data given) has: defaults filled in are not counted."""
    if isinstance(value, dict) and isinstance(shape, dict):
        return sum(_items(value[k], shape[k]) for k in value if k in shape)
    if isinstance(value, list | tuple | set) and isinstance(shape, list):
        items = list(value)
        return len(items) + sum(_items(v, s) for v, s in zip(items, shape, strict=False))
    return 0


def _pydantic(cls: Any, data: Any) -> tuple[bool, Any]:
    adapter = pydantic.TypeAdapter(cls)
    try:
        out = adapter.validate_json(json.dumps(data), strict=True)
    except pydantic.ValidationError:
        return False, None
    return True, out


#: the generated types whose values pydantic compares with bools as numbers
_INTS = (Level, Literal[True, 0], Literal[1, 2, "x"])


def _compare(cls: Any, data: Any, extra: str) -> None:
    ok, ours = _ours(cls, data, extra)
    expected, theirs = _pydantic(cls, data)
    if expected and not ok and _holds(cls, (set,)):
        dumped = pydantic.TypeAdapter(cls).dump_python(theirs, mode="json", warnings=False)
        if _items(dumped, data) < _items(data, data):
            # docs/validation.md (on `uniqueItems`): a Python `set` field "refuses duplicates
            # (`items must be unique`) where pydantic drops them silently"
            return
    if expected and not ok and _holds(cls, _INTS) and "bool" in str(_types(data)):
        # docs/validation.md ("Rules"): "`True` is not a number", nor an IntEnum's 1 or
        # Literal 0; pydantic's strict mode takes `true` for `Level.LOW`, `false` for 0
        return
    if expected and not ok and _holds(cls, (Literal[True, 0],)) and "int" in str(_types(data)):
        # the same rule the other way: 1 is not Literal[True]'s True, which pydantic's
        # strict mode takes it for
        return
    assert ok == expected, (
        f"ours {'accepts' if ok else 'refuses'} {data!r}; pydantic differs; {_show(cls)}"
    )
    if ok and extra != "allow" and not _holds(cls, (set, Union, types.UnionType)):
        # (under "allow" the kept keys are compared by the verdict only: pydantic puts
        # them on a dataclass instance as attributes, not fields)
        # a set is a list here and a set in pydantic ("sets and tuples as lists"); a union
        # gives a value to its first option taking it (docs/validation.md, "How it is
        # fast"), pydantic's smart mode to the best match: the verdicts are compared
        why = f"{data!r} gives {ours!r}, pydantic {theirs!r}; {_show(cls)}"
        assert _plain(ours) == _plain(theirs), why
        assert _types(_plain(ours)) == _types(_plain(theirs)), why


def _show(annotation: Any) -> str:
    """A generated schema written out, nested classes too (for failure messages)."""
    if isinstance(annotation, type) and hasattr(annotation, "__pydantic_config__"):
        kind = "dataclass" if dataclasses.is_dataclass(annotation) else "TypedDict"
        fields = ", ".join(f"{k}: {_show(v)}" for k, v in annotation.__annotations__.items())
        defaults = (
            {
                f.name: f.default
                for f in dataclasses.fields(annotation)
                if f.default is not dataclasses.MISSING
            }
            if dataclasses.is_dataclass(annotation)
            else getattr(annotation, "__total__", None)
        )
        return f"{kind}({fields}; {defaults})"
    args = typing.get_args(annotation)
    origin = typing.get_origin(annotation)
    if args and origin is not Literal and origin is not Annotated:
        name = getattr(origin, "__name__", None) or repr(origin)
        return f"{name}[{', '.join(_show(a) for a in args)}]"
    return repr(annotation)


def _holds(annotation: Any, origins: tuple[Any, ...], seen: set[int] | None = None) -> bool:
    """True when ``origins`` has the origin of ``annotation`` or of a type inside it."""
    seen = set() if seen is None else seen
    if id(annotation) in seen:
        return False
    seen.add(id(annotation))
    if annotation in origins:
        return True
    origin = typing.get_origin(annotation)
    if origin in origins:
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        if origin not in (Union, types.UnionType) or len(options) > 1:
            return True  # an Optional is no union of options to choose from
    inner = list(typing.get_args(annotation))
    if isinstance(annotation, type) and hasattr(annotation, "__pydantic_config__"):
        inner.extend(annotation.__annotations__.values())
    return any(_holds(item, origins, seen) for item in inner)


def _types(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _types(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_types(v) for v in value]
    return type(value).__name__


# the value strategies are built while drawing (one per generated field), and hypothesis
# may show one nested deep enough to warn about its repr's size
@pytest.mark.filterwarnings(
    "ignore:Generating overly large repr:hypothesis.errors.HypothesisWarning"
)
@SETTINGS
@given(st.data())
def test_class_schema_verdicts_match_pydantic(data: st.DataObject) -> None:
    extra = data.draw(st.sampled_from(["forbid", "ignore", "allow"]))
    cls, objects = data.draw(class_schemas())
    _set_extra(cls, extra)
    valid = data.draw(objects)
    _compare(cls, valid, extra)
    _compare(cls, data.draw(mutated(valid)), extra)


def _set_extra(cls: Any, extra: str) -> None:
    """The policy on every generated class, nested ones too."""
    seen: set[int] = set()
    stack = [cls]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, type) and hasattr(current, "__pydantic_config__"):
            current.__pydantic_config__ = pydantic.ConfigDict(extra=extra)
            stack.extend(getattr(current, "__annotations__", {}).values())
        stack.extend(typing.get_args(current))


# Regressions found by the test above (minimised).


@pytest.mark.parametrize(
    ("annotation", "words"),
    [
        # pydantic markers the validator dropped: the field was accepted unchecked
        (Annotated[Decimal, "max_digits"], "max_digits=2"),
        (Annotated[int, "after"], "AfterValidator"),
        (Annotated[str, "to_lower"], "to_lower=True"),
        (Annotated[str, "strip"], "strip_whitespace=True"),
        (Annotated[int, "alias"], "an alias"),
        (Annotated[int, "default"], "give the default as the field's value"),
        (Annotated[int, "lax"], "coerce=True"),
    ],
)
def test_unenforceable_pydantic_markers_are_refused_at_registration(
    annotation: Any, words: str
) -> None:
    base, name = typing.get_args(annotation)
    marker = {
        "max_digits": pydantic.Field(max_digits=2),
        "after": pydantic.AfterValidator(lambda v: v),
        "to_lower": pydantic.StringConstraints(to_lower=True),
        "strip": pydantic.StringConstraints(strip_whitespace=True),
        "alias": pydantic.Field(alias="A"),
        "default": pydantic.Field(default=3),
        "lax": pydantic.Strict(False),
    }[name]
    cls = dataclasses.make_dataclass("Marked", [("a", Annotated[base, marker])])
    with pytest.raises(ConfigurationError, match=words):
        EventValidator().register("x", cls)


@dataclasses.dataclass
class _FieldDefaults:
    a: int = pydantic.Field(gt=0)  # type: ignore[assignment]
    b: int = pydantic.Field(default=3, ge=0)  # type: ignore[assignment]
    c: list[int] = pydantic.Field(default_factory=list, max_length=2)  # type: ignore[assignment]


class _PlainFieldDefault:
    a: int = pydantic.Field(default=1, le=5)


@pytest.mark.parametrize(
    ("cls", "data"),
    [
        # the FieldInfo itself was the default: check() raised a TypeError (not JSON)
        (_FieldDefaults, {"a": 1}),
        (_FieldDefaults, {}),
        # its constraints were dropped: b=-1 and c with 3 items were accepted
        (_FieldDefaults, {"a": 1, "b": -1}),
        (_FieldDefaults, {"a": 1, "c": [1, 2, 3]}),
        (_FieldDefaults, {"a": 0}),
        (_PlainFieldDefault, {}),
        (_PlainFieldDefault, {"a": 6}),
    ],
)
def test_pydantic_field_as_a_default_is_read_as_pydantic_reads_it(cls: Any, data: Any) -> None:
    validator = EventValidator()
    validator.register("x", cls)
    if cls is _PlainFieldDefault:  # pydantic reads no plain class: what it says of one
        expected = {"a": 1} if data == {} else None
    else:
        ok, theirs = _pydantic(cls, data)
        expected = _plain(theirs) if ok else None
    try:
        out, _ = validator.check("x", data)
    except ValidationError:
        assert expected is None
    else:
        assert _plain(out) == expected


@pytest.mark.parametrize(
    ("data", "valid"),
    [({"a": "1.5"}, True), ({"a": 0}, False), ({"a": "10.01"}, False), ({"a": 10}, True)],
)
@pytest.mark.parametrize(
    "bounds",
    [
        (annotated_types.Gt(0), annotated_types.Le(10)),
        (pydantic.Field(gt=0, le=Decimal("10")),),
    ],
)
def test_decimal_bounds_are_checked(bounds: tuple[Any, ...], data: Any, valid: bool) -> None:
    # a bound on a Decimal field was refused at registration (msgspec.Meta takes none)
    cls = dataclasses.make_dataclass("Price", [("a", Annotated[(Decimal, *bounds)])])
    ours = _ours(cls, data, "forbid")
    assert ours[0] is valid is _pydantic(cls, data)[0]
    if valid:
        assert ours[1] == {"a": Decimal(data["a"])}
