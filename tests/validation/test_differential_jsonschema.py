"""Differential tests: our JSON Schema verdicts against ``jsonschema`` (Draft 2020-12).

Hypothesis generates schemas over the documented subset (docs/validation.md, "JSON Schema
subset") and JSON instances, many of them derived from the schema so that they are
valid; our verdict (accepted / ``ValidationError``) must be the reference
implementation's, on the fast path and in the walk alike. The documented deviations are
kept out of the comparison, each where it is, with the doc line that justifies it.

Set ``PEPPERPY_DIFF_EXAMPLES`` to run many more examples when hunting bugs.
"""

from __future__ import annotations

import os
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

from pepperpy.event import ConfigurationError, EventValidator, ValidationError
from pepperpy.event.validation._fast import dec_hook

jsonschema = pytest.importorskip("jsonschema")

EXAMPLES = int(os.environ.get("PEPPERPY_DIFF_EXAMPLES", "300"))
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

KEYS = ["a", "b", "c", "ab", "x1", "", "ba"]
TYPES = ["null", "boolean", "integer", "number", "string", "array", "object"]
# ECMA-262 and Python's re (which jsonschema uses) read these alike on the strings drawn
# below. docs/validation.md: "`pattern` ... are ECMA-262 regular expressions ...: `$` is
# the end of the string only ..., `\d` is `[0-9]` ...": so no `$`, `\d`, `\w`, `\s`, `.`
# here (jsonschema would read them as Python does, e.g. `$` before a final newline).
PATTERNS = ["^a", "b", "^[ab]+", "a|1", "^x", "[0-9]", "^(ab)*c", "ab?1", "^[^a]"]
ALPHABET = "ab1x\n \u00e9\U0001f600"

# docs/validation.md: "`type: integer` refuses a float, even an integral one (`1.0`,
# ...); 2020-12 calls such numbers integers": floats drawn are never integral
floats = st.integers(-40, 40).filter(lambda i: i % 4).map(lambda i: i / 4)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-6, 12),
    floats,
    st.text(ALPHABET, max_size=4),
    st.sampled_from(KEYS),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.sampled_from(KEYS), inner, max_size=4),
    ),
    max_leaves=10,
)
bounds = st.one_of(st.integers(-3, 8), floats.filter(lambda f: -3 < f < 8))


@st.composite
def schemas(draw: st.DrawFn, depth: int = 3, refs: tuple[str, ...] = ()) -> Any:
    """A schema of the supported subset, never one we refuse by design."""
    if depth <= 0 or draw(st.integers(0, 2)) == 0:
        return draw(_leaf(refs))
    type_: Any = draw(
        st.sampled_from(
            [
                None,
                None,
                None,
                *TYPES,
                ["integer", "string"],
                ["null", "object"],
                ["array", "number"],
            ]
        )
    )
    types = set(TYPES) if type_ is None else {type_} if isinstance(type_, str) else set(type_)
    schema: dict[str, Any] = {} if type_ is None else {"type": type_}
    sub = schemas(depth - 1, refs)
    if "object" in types and draw(st.booleans()):
        schema.update(draw(_object_keywords(sub)))
        if "properties" in schema or "required" in schema:
            # docs/validation.md: "A schema with `properties` or `required` and no `type`
            # is an object schema" and "Keywords of a type that the `type` beside them
            # excludes ... are refused at registration"
            types &= {"object", "null"} if type_ is not None else {"object"}
    if "string" in types and draw(st.booleans()):
        schema.update(draw(_string_keywords()))
    if types & {"integer", "number"} and draw(st.booleans()):
        schema.update(draw(_number_keywords()))
    if "array" in types and draw(st.booleans()):
        schema.update(draw(_array_keywords(sub)))
    schema.update(draw(_generic_keywords(sub, refs)))
    return schema


def _leaf(refs: tuple[str, ...]) -> st.SearchStrategy[Any]:
    leaves: list[st.SearchStrategy[Any]] = [
        st.sampled_from([True, False, {}]),
        st.sampled_from(TYPES).map(lambda t: {"type": t}),
        st.lists(scalars, min_size=1, max_size=3).map(lambda v: {"enum": v}),
        json_values.map(lambda v: {"const": v}),
        _string_keywords(),
        _number_keywords(),
    ]
    if refs:
        leaves.append(st.sampled_from(refs).map(lambda r: {"$ref": f"#/$defs/{r}"}))
    # the whole schema again: fine inside items or properties, refused where it would loop
    recursive = st.integers(0, 9).map(lambda i: {"$ref": "#"} if i == 0 else {})
    return st.one_of(*leaves, recursive)


@st.composite
def _string_keywords(draw: st.DrawFn) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if draw(st.booleans()):
        out["minLength"] = draw(st.integers(0, 3))
    if draw(st.booleans()):
        out["maxLength"] = draw(st.integers(0, 4))
    if draw(st.booleans()) or not out:
        out["pattern"] = draw(st.sampled_from(PATTERNS))
    return out


@st.composite
def _number_keywords(draw: st.DrawFn) -> dict[str, Any]:
    names = ["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"]
    chosen = draw(st.lists(st.sampled_from(names), min_size=1, max_size=3, unique=True))
    out: dict[str, Any] = {}
    for name in chosen:
        if name == "multipleOf":
            out[name] = draw(st.sampled_from([1, 2, 3, 0.5, 0.25, 1.5]))
        else:
            out[name] = draw(bounds)
    return out


@st.composite
def _array_keywords(draw: st.DrawFn, sub: st.SearchStrategy[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if draw(st.booleans()):
        out["items"] = draw(sub)
    if draw(st.integers(0, 3)) == 0:
        out["prefixItems"] = draw(st.lists(sub, min_size=1, max_size=2))
    if draw(st.booleans()):
        out["minItems"] = draw(st.integers(0, 3))
    if draw(st.booleans()):
        out["maxItems"] = draw(st.integers(0, 4))
    if draw(st.integers(0, 2)) == 0:
        out["uniqueItems"] = draw(st.booleans())
    if draw(st.integers(0, 2)) == 0:
        out["contains"] = draw(sub)
        if draw(st.booleans()):
            out["minContains"] = draw(st.integers(0, 2))
        if draw(st.booleans()):
            out["maxContains"] = draw(st.integers(0, 3))
    return out


@st.composite
def _object_keywords(draw: st.DrawFn, sub: st.SearchStrategy[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if draw(st.booleans()):
        out["properties"] = draw(st.dictionaries(st.sampled_from(KEYS), sub, max_size=3))
    declared = list(out.get("properties", {}))
    if draw(st.integers(0, 2)) == 0:
        out["patternProperties"] = draw(
            st.dictionaries(st.sampled_from(PATTERNS), sub, min_size=1, max_size=2)
        )
    if draw(st.integers(0, 2)) == 0:
        out["additionalProperties"] = draw(sub)
    if draw(st.booleans()):
        # docs/validation.md: "a schema no object could satisfy because `required` names
        # a key that `additionalProperties: false` forbids" is refused at registration
        pool = declared if out.get("additionalProperties") is False else KEYS
        if pool:
            out["required"] = draw(st.lists(st.sampled_from(pool), max_size=2, unique=True))
    if draw(st.integers(0, 3)) == 0:
        out["minProperties"] = draw(st.integers(0, 3))
    if draw(st.integers(0, 3)) == 0:
        out["maxProperties"] = draw(st.integers(0, 3))
    if draw(st.integers(0, 3)) == 0:
        out["propertyNames"] = draw(st.one_of(sub, _string_keywords()))
    if draw(st.integers(0, 3)) == 0:
        out["dependentRequired"] = draw(
            st.dictionaries(
                st.sampled_from(KEYS),
                st.lists(st.sampled_from(KEYS), max_size=2, unique=True),
                min_size=1,
                max_size=2,
            )
        )
    return out


@st.composite
def _generic_keywords(
    draw: st.DrawFn, sub: st.SearchStrategy[Any], refs: tuple[str, ...]
) -> dict[str, Any]:
    """``enum``, ``const``, combinators, ``not``, ``if``, ``$ref``."""
    out: dict[str, Any] = {}
    if draw(st.integers(0, 5)) == 0:
        out["enum"] = draw(st.lists(json_values, min_size=1, max_size=3))
    if draw(st.integers(0, 7)) == 0:
        out["const"] = draw(json_values)
    if draw(st.integers(0, 5)) == 0:
        out["not"] = draw(sub)
    for name in ("allOf", "anyOf", "oneOf"):
        if draw(st.integers(0, 4)) == 0:
            out[name] = draw(st.lists(sub, min_size=1, max_size=3))
    if draw(st.integers(0, 5)) == 0:
        out["if"] = draw(sub)
        if draw(st.booleans()):
            out["then"] = draw(sub)
        if draw(st.booleans()):
            out["else"] = draw(sub)
    if refs and draw(st.integers(0, 5)) == 0:
        out["$ref"] = "#/$defs/" + draw(st.sampled_from(refs))
    return out


@st.composite
def root_schemas(draw: st.DrawFn) -> Any:
    """A schema, maybe with ``$defs`` each referring to earlier ones or recursively."""
    defs: dict[str, Any] = {}
    for index in range(draw(st.integers(0, 2))):
        name = f"d{index}"
        defs[name] = draw(schemas(2, tuple(defs)))
    if draw(st.integers(0, 3)) == 0:  # recursion through an object's properties
        defs["node"] = {
            "type": "object",
            "properties": {"v": draw(schemas(1, tuple(defs))), "next": {"$ref": "#/$defs/node"}},
        }
    root = draw(schemas(3, tuple(defs)))
    # register() takes a JSON Schema dict (or a class): a boolean root goes in an allOf
    root = {"allOf": [root]} if not isinstance(root, dict) else dict(root)
    if defs:
        root["$defs"] = defs
    return root


def reference_schema(schema: Any, root: Any = None) -> Any:
    """``schema`` as 2020-12 says what we do with it.

    docs/validation.md: "A schema with `properties` or `required` and no `type` is an
    object schema, as it always was here: it refuses non-objects (2020-12 would accept
    them)": such a schema gets its `type: object`.
    """
    if isinstance(schema, list):
        return [reference_schema(item, root) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in ("enum", "const"):
            out[key] = value
        elif key in ("properties", "patternProperties", "$defs", "dependentRequired"):
            out[key] = {k: reference_schema(v, root) for k, v in value.items()}
        else:
            out[key] = reference_schema(value, root)
    if "type" not in out and ("properties" in out or "required" in out):
        out["type"] = "object"
    if "additionalProperties" in schema and root is not None:
        # docs/validation.md: "`additionalProperties` beside `properties` also lets keys
        # declared by such parts through (2020-12 would apply it to them)": those keys
        # get a schema of their own here, so that additionalProperties leaves them alone
        names, patterns = _declared_by_parts(schema, root)
        if names:
            out["properties"] = {**dict.fromkeys(names, True), **out.get("properties", {})}
        if patterns:
            out["patternProperties"] = {
                **dict.fromkeys(patterns, True),
                **out.get("patternProperties", {}),
            }
    return out


_PARTS = ("$ref", "allOf", "anyOf", "oneOf", "if", "then", "else")


def _declared_by_parts(schema: dict[str, Any], root: Any) -> tuple[set[str], set[str]]:
    """The keys and patterns the parts beside ``schema``'s type keywords declare (by
    ``properties``, ``required`` or ``patternProperties``, followed through ``$ref``,
    ``allOf``, ``anyOf``, ``oneOf``, ``if``/``then``/``else``; not ``not``)."""
    names: set[str] = set()
    patterns: set[str] = set()
    seen: set[int] = set()
    stack = [schema[k] for k in _PARTS if k in schema and k != "$ref"]
    if "$ref" in schema:
        stack.append(_resolve(root, {"$ref": schema["$ref"]}))
    while stack:
        part = stack.pop()
        if isinstance(part, list):
            stack.extend(part)
            continue
        if not isinstance(part, dict) or id(part) in seen:
            continue
        seen.add(id(part))
        names |= set(part.get("properties", {})) | set(part.get("required", []))
        patterns |= set(part.get("patternProperties", {}))
        stack.extend(part[k] for k in _PARTS if k in part and k != "$ref")
        if "$ref" in part:
            stack.append(_resolve(root, {"$ref": part["$ref"]}))
    return names, patterns


def _resolve(root: Any, schema: Any) -> Any:
    for _ in range(5):  # $defs refer to earlier ones only, but "#" may loop
        if not (isinstance(schema, dict) and "$ref" in schema and len(schema) == 1):
            break
        ref = schema["$ref"]
        schema = root if ref == "#" else root["$defs"][ref.rsplit("/", 1)[1]]
    return schema


@st.composite
def derived(draw: st.DrawFn, root: Any, schema: Any, depth: int = 4) -> Any:
    """An instance aimed at being valid for ``schema`` (often is, not always)."""
    schema = _resolve(root, schema)
    if depth <= 0 or not isinstance(schema, dict) or draw(st.integers(0, 15)) == 0:
        return draw(json_values)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return draw(st.sampled_from(schema["enum"]))
    for name in ("allOf", "anyOf", "oneOf"):
        if name in schema and draw(st.booleans()):
            return draw(derived(root, draw(st.sampled_from(schema[name])), depth - 1))
    if "$ref" in schema and draw(st.booleans()):
        return draw(derived(root, {"$ref": schema["$ref"]}, depth - 1))
    type_ = schema.get("type")
    if type_ is None:
        type_ = "object" if "properties" in schema or "required" in schema else None
    if isinstance(type_, list):
        type_ = draw(st.sampled_from(type_))
    if type_ is None:
        type_ = draw(st.sampled_from(TYPES))
    if type_ == "object":
        out: dict[str, Any] = {}
        props = schema.get("properties", {})
        for key in [*schema.get("required", []), *props]:
            if key not in out and (key in schema.get("required", []) or draw(st.booleans())):
                out[key] = draw(derived(root, props.get(key, True), depth - 1))
        if schema.get("additionalProperties") is not False and draw(st.booleans()):
            out.update(draw(st.dictionaries(st.sampled_from(KEYS), scalars, max_size=2)))
        return out
    if type_ == "array":
        prefix = [draw(derived(root, s, depth - 1)) for s in schema.get("prefixItems", [])]
        rest_schema = schema.get("items", True)
        rest = draw(st.lists(derived(root, rest_schema, depth - 1), max_size=3))
        if "contains" in schema and draw(st.booleans()):
            rest.append(draw(derived(root, schema["contains"], depth - 1)))
        return prefix + rest
    if type_ == "string":
        low, high = schema.get("minLength", 0), schema.get("maxLength", 4)
        return draw(st.text(ALPHABET, min_size=low, max_size=max(low, high)))
    if type_ in ("integer", "number"):
        values = [v for k, v in schema.items() if k in ("minimum", "maximum") and v == v]
        ints = st.integers(-6, 12)
        return draw(st.one_of(ints, st.sampled_from(values)) if values else ints)
    if type_ == "boolean":
        return draw(st.booleans())
    return None


@st.composite
def cases(draw: st.DrawFn) -> tuple[Any, Any]:
    schema = draw(root_schemas())
    instance = draw(st.one_of(json_values, derived(schema, schema), derived(schema, schema)))
    return schema, instance


def _register(schema: Any, **options: Any) -> Any:
    validator = EventValidator(**options)
    validator.register("x", schema)
    return validator._latest["x"]


def _our_verdict(schema: Any, instance: Any) -> bool:
    """True when we accept ``instance``, checked alike on the fast path and the walk."""
    compiled = _register(schema)
    fast = compiled.fast
    if fast is None:  # keeping undeclared keys has no fast path; "ignore" refuses the same
        fast = _register(schema, extra_fields="ignore").fast
    try:
        compiled.explain(instance)
    except ValidationError as exc:
        walked = False
        _check_problems(exc)
    else:
        walked = True
    if fast is not None:
        try:
            msgspec.convert(instance, fast, strict=True, dec_hook=dec_hook)
        except msgspec.ValidationError:
            pass
        else:
            assert walked, "the fast path accepts what the walk refuses"
    try:
        compiled.check(instance)
    except ValidationError as exc:
        checked = False
        _check_problems(exc)
    else:
        checked = True
    assert checked == walked, "check() and the walk disagree"
    return walked


def _check_problems(exc: ValidationError) -> None:
    assert exc.errors, "a refusal names its problems"
    for problem in exc.errors:
        assert isinstance(problem.path, str)
        assert isinstance(problem.expected, str) and problem.expected
        assert isinstance(problem.actual, str) and problem.actual
        assert isinstance(problem.message, str) and problem.message


def _reference_verdict(schema: Any, instance: Any) -> bool:
    reference = reference_schema(schema, schema)
    return bool(jsonschema.Draft202012Validator(reference).is_valid(instance))


def _compare(schema: Any, instance: Any) -> None:
    try:
        _register(schema)
    except ConfigurationError as exc:
        # docs/validation.md: "a `$ref` that leads back to itself without descending into
        # the value, like `{"$ref": "#"}` ..., could never decide a value and is refused"
        assert "refers back to itself without descending" in str(exc)
        reject()
    expected = _reference_verdict(schema, instance)
    assert _our_verdict(schema, instance) == expected, (schema, instance, expected)


@SETTINGS
@given(cases())
def test_verdicts_match_jsonschema(case: tuple[Any, Any]) -> None:
    _compare(*case)


@SETTINGS
@given(
    schemas(2).map(lambda s: s if isinstance(s, dict) else {"not": {"not": s}}),
    st.lists(json_values, min_size=1, max_size=3),
)
def test_verdicts_match_jsonschema_on_arbitrary_values(schema: Any, values: list[Any]) -> None:
    for value in values:
        _compare(schema, value)


#: hand-picked values where implementations often part ways (equality, lengths, bounds)
EDGE_CASES = [
    ({"uniqueItems": True}, [[1, 1.0], [0, False], [1, True], [[1], [True]], [0, -0.0]]),
    ({"uniqueItems": True}, [[{"a": 1}, {"a": 1.0}], [{"a": 1, "b": 2}, {"b": 2, "a": 1}]]),
    ({"uniqueItems": True}, [[[1, [2]], [1, [2.0]]], [None, False], [[], {}], [2**63, 2**63]]),
    ({"enum": [1]}, [1.0, True, 1]),
    ({"enum": [False]}, [0, False, 0.0]),
    ({"const": [1]}, [[True], [1.0], [1]]),
    ({"const": {"a": [1, {"b": None}]}}, [{"a": [1.0, {"b": None}]}, {"a": [True, {"b": None}]}]),
    ({"const": 0}, [-0.0, 0.0, False]),
    # integers within the 64 bits events carry (beyond them an event refuses the data,
    # docs/validation.md: "integers beyond the 64-bit range JSON encoders carry")
    ({"type": "integer", "maximum": 2**63}, [2**63, 2**64 - 1, -(2**63), 2**63 - 1, True]),
    ({"type": "integer", "multipleOf": 3}, [3 * 2**62, 2**64 - 1, -9]),
    ({"type": "number", "maximum": 1e308}, [1e308, 2**64 - 1, True]),
    ({"type": "string", "maxLength": 1}, ["\U0001f600", "\U0001f600\U0001f600", "e\u0301"]),
    ({"type": "array", "contains": {"type": "integer"}, "minContains": 0}, [[], ["a"]]),
    ({"contains": {"type": "integer"}, "minContains": 0, "maxContains": 0}, [[], [1], "x"]),
    ({"contains": False}, [[], [1], {}]),
    ({"propertyNames": False}, [{}, {"a": 1}, []]),
    ({"propertyNames": {"pattern": "^a"}}, [{"a": 1}, {"b": 1}, {"": 1}]),
    ({"type": "array", "prefixItems": [{"type": "integer"}], "items": False}, [[], [1], [1, 2]]),
    ({"dependentRequired": {"a": ["b"]}}, [{"a": 1}, {"a": 1, "b": 2}, {"b": 1}, [], "a"]),
    (
        {
            "type": "object",
            "properties": {"a": {"type": "integer"}},
            "patternProperties": {"^a": {"minimum": 2}},
        },
        [{"a": 1}, {"a": 2}, {"ab": 1}, {"ab": "x"}],
    ),
    ({"type": "object", "patternProperties": {"": {"type": "integer"}}}, [{"": 1}, {"x": "y"}]),
    ({"if": {"minimum": 3}, "then": {"multipleOf": 2}, "else": {"type": "string"}}, [4, 5, 1]),
    ({"oneOf": [{"type": "integer"}, {"minimum": 2}]}, [1, 3, 2.5, "x"]),
    ({"type": ["integer", "string"], "minimum": 2, "minLength": 2}, [1, 2, "a", "ab", 2.5]),
    ({"type": "object", "properties": {"a": False}}, [{}, {"a": 1}]),
    ({"enum": [[1, 2], {"a": 1}, None]}, [[1, 2], [1.0, 2.0], [2, 1], {"a": True}, None]),
    (
        {
            "$defs": {
                "n": {
                    "type": ["object", "null"],
                    "properties": {"next": {"$ref": "#/$defs/n"}},
                    "required": ["next"],
                }
            },
            "$ref": "#/$defs/n",
        },
        [None, {"next": None}, {"next": {"next": None}}, {"next": {}}],
    ),
    ({"type": "array", "items": {"$ref": "#"}, "maxItems": 2}, [[], [[]], [[[], [], []]]]),
]


@pytest.mark.parametrize(("schema", "instances"), EDGE_CASES)
def test_edge_cases_match_jsonschema(schema: Any, instances: list[Any]) -> None:
    for instance in instances:
        _compare(schema, instance)


#: (schema, instance, valid): discrepancies the tests above found, minimised
REGRESSIONS = [
    # a required key that properties does not declare is judged by additionalProperties
    ({"required": ["b"], "additionalProperties": {"type": "null"}}, {"b": []}, False),
    ({"required": ["b"], "additionalProperties": {"type": "null"}}, {"b": None}, True),
    (
        {"required": ["b"], "patternProperties": {"^a": {}}, "additionalProperties": False},
        {"b": 1},
        None,  # refused at registration: no object could be valid
    ),
]


@pytest.mark.parametrize(("schema", "instance", "valid"), REGRESSIONS)
def test_regressions(schema: Any, instance: Any, valid: bool | None) -> None:
    if valid is None:
        with pytest.raises(ConfigurationError):
            _register(schema)
        return
    assert _reference_verdict(schema, instance) is valid
    assert _our_verdict(schema, instance) is valid


def _subschemas(schema: Any, at: str = "#") -> list[tuple[dict[str, Any], str]]:
    """Every schema object inside ``schema`` with its JSON Pointer."""
    if not isinstance(schema, dict):
        return []
    found = [(schema, at)]
    for key, value in schema.items():
        if key in ("properties", "patternProperties", "$defs"):
            for name, sub in value.items():
                found += _subschemas(sub, f"{at}/{key}/{name}")
        elif key in ("allOf", "anyOf", "oneOf", "prefixItems"):
            for index, sub in enumerate(value):
                found += _subschemas(sub, f"{at}/{key}/{index}")
        elif key in ("items", "additionalProperties", "not", "if", "then", "else"):
            found += _subschemas(value, f"{at}/{key}")
        elif key in ("contains", "propertyNames"):
            found += _subschemas(value, f"{at}/{key}")
    return found


#: keywords whose value may be malformed, and malformed or odd values to give them
CORRUPTIBLE = [
    "type", "minimum", "maximum", "exclusiveMinimum", "multipleOf", "minLength",
    "maxItems", "minProperties", "required", "enum", "properties", "items", "prefixItems",
    "allOf", "anyOf", "oneOf", "not", "additionalProperties", "patternProperties",
    "pattern", "uniqueItems", "dependentRequired", "propertyNames", "contains", "$defs",
    "title", "description", "$comment", "examples", "deprecated", "readOnly", "$ref",
]  # fmt: skip
ODD_VALUES = [
    "x", "strnig", "string", 3, -1, 0, 1.5, True, None, [], [3], ["a", "a"], [1],
    {}, {"a": 3}, {"a": "b"}, {"a": [1]}, "(", "^a", [{"type": "x"}], {"type": "x"},
    {"(": {}}, [[1]], {"a": {"minimum": "x"}}, "#/$defs/nowhere", "#", "http://x/y",
]  # fmt: skip


@st.composite
def corrupted(draw: st.DrawFn) -> tuple[Any, str, str]:
    """A valid schema with one keyword somewhere set to an odd value."""
    schema = draw(root_schemas())
    target, at = draw(st.sampled_from(_subschemas(schema)))
    keyword = draw(st.sampled_from(CORRUPTIBLE))
    target[keyword] = draw(st.sampled_from(ODD_VALUES))
    return schema, keyword, at


@settings(SETTINGS, max_examples=max(1, EXAMPLES * 2 // 3))  # check_schema is slow
@given(corrupted())
def test_invalid_schemas_are_refused_at_registration(case: tuple[Any, str, str]) -> None:
    """What 2020-12's metaschema refuses, we refuse too, with a ConfigurationError."""
    schema, keyword, _ = case
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError:
        invalid = True
    else:
        invalid = False
    try:
        _register(schema)
    except ConfigurationError as exc:
        assert "#" in str(exc), "the error names where in the schema"
    else:
        assert not invalid, f"an invalid schema was accepted ({keyword})"


INVALID_SCHEMAS = [
    ({"minimum": "x"}, "'minimum' at #/minimum"),
    ({"type": "strnig"}, "type 'strnig' at #/type"),
    ({"properties": {"a": {"type": ["string", "strnig"]}}}, "at #/properties/a/type"),
    (
        {"properties": {"a": 3}},
        "'properties' at #/properties/a must be a schema (an object or a bool), got 3",
    ),
    ({"allOf": [{}, None]}, "'allOf' at #/allOf/1"),
    ({"required": ["a", 1]}, "'required' at #/required/1"),
    ({"dependentRequired": {"a": "b"}}, "'dependentRequired' at #/dependentRequired/a"),
    # a definition no $ref uses is checked all the same
    ({"$defs": {"a": 3}}, "'$defs' at #/$defs/a"),
    ({"$defs": {"a": {"type": "strnig"}}}, "type 'strnig' at #/$defs/a/type"),
    ({"definitions": {"a": {"minimum": "x"}}}, "'minimum' at #/definitions/a/minimum"),
    ({"items": {"$defs": {"b": {"maxLength": -1}}}}, "'maxLength' at #/items/$defs/b/maxLength"),
    (
        {"$defs": {"a": {"$defs": {"b": {"minLength": "1"}}}}},
        "'minLength' at #/$defs/a/$defs/b/minLength",
    ),
    # what the parts beside type keywords declare is read before they are compiled
    ({"type": "object", "oneOf": [{"properties": 3}]}, "'properties' at #/oneOf/0/properties"),
    ({"type": "object", "allOf": [{"oneOf": 3}]}, "'oneOf' at #/allOf/0/oneOf"),
    ({"type": "object", "allOf": [{"required": [[1]]}]}, "'required' at #/allOf/0/required/0"),
    (
        {"type": "object", "$ref": "#/$defs/a", "$defs": {"a": {"anyOf": 5}}},
        "'anyOf' at #/$defs/a/anyOf",
    ),
    (
        {"type": "object", "allOf": [{"patternProperties": {"(": {}}}]},
        "'patternProperties' at #/allOf/0/patternProperties/(",
    ),
    # annotations are ignored, but not when malformed
    ({"title": 3}, "'title' at #/title"),
    ({"properties": {"a": {"description": []}}}, "'description' at #/properties/a/description"),
    ({"$schema": 3}, "'$schema' at #/$schema"),
    ({"$id": 3}, "'$id' at #/$id"),
    ({"$comment": None}, "'$comment' at #/$comment"),
    ({"examples": "x"}, "'examples' at #/examples"),
    ({"deprecated": "yes"}, "'deprecated' at #/deprecated"),
    ({"readOnly": 1}, "'readOnly' at #/readOnly"),
    ({"writeOnly": None}, "'writeOnly' at #/writeOnly"),
]


@pytest.mark.parametrize(("schema", "message"), INVALID_SCHEMAS)
def test_invalid_schemas_name_the_keyword_and_its_place(schema: Any, message: str) -> None:
    with pytest.raises(jsonschema.SchemaError):
        jsonschema.Draft202012Validator.check_schema(schema)
    with pytest.raises(ConfigurationError) as info:
        _register(schema)
    assert message in str(info.value)


def test_unused_definitions_that_could_never_decide_are_still_accepted() -> None:
    # a valid schema (jsonschema agrees): only a $ref that is used is refused for looping
    for defs in ({"a": {"$ref": "#/$defs/a"}}, {"a": {"items": {"$ref": "#/$defs/a/items"}}}):
        schema = {"$defs": defs, "type": "integer"}
        jsonschema.Draft202012Validator.check_schema(schema)
        assert _our_verdict(schema, 1) is True
        assert _our_verdict(schema, "1") is False
        with pytest.raises(ConfigurationError, match="refers back to itself"):
            _register({**schema, "$ref": "#/$defs/a"})


#: schemas that are no JSON (Python objects in a schema dict), refused at registration
NOT_JSON_SCHEMAS = [
    ({1: {}}, "JSON Schema at # has a key that is no string: 1"),
    ({"properties": {"a": {2: 3}}}, "at #/properties/a has a key that is no string: 2"),
    ({"enum": [1, float("nan")]}, "'enum' at #/enum/1 must be a JSON value, got nan"),
    ({"enum": [{1: 2}]}, "'enum' at #/enum/0"),
    ({"const": float("inf")}, "'const' at #/const must be a JSON value"),
    ({"const": {"a": {1, 2}}}, "'const' at #/const must be a JSON value"),
    ({"dependentRequired": {1: ["a"]}}, "'dependentRequired' at #/dependentRequired"),
]


@pytest.mark.parametrize(("schema", "message"), NOT_JSON_SCHEMAS)
def test_schemas_that_are_no_json_are_refused(schema: Any, message: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        _register(schema)
    assert message in str(info.value)


@pytest.mark.parametrize(
    "schema",
    [
        {"items": {"$ref": "#/items"}},
        {"type": "object", "properties": {"x": {"$ref": "#/properties/x"}}},
        {
            "type": "object",
            "properties": {"x": {"anyOf": [{"type": "null"}, {"$ref": "#/properties/x"}]}},
        },
        {
            "items": {"$ref": "#/$defs/a"},
            "$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"allOf": [{"$ref": "#/$defs/a"}]}},
        },
    ],
)
def test_a_ref_looping_inside_items_or_properties_is_named(schema: Any) -> None:
    # was "nested too deeply to compile" (a RecursionError caught), not the loop
    with pytest.raises(ConfigurationError, match="refers back to itself without descending"):
        _register(schema)
