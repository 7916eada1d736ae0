"""JSON Schema keywords: which exist, what their values must be, which keys they declare.

The compiler (``_json_schema``) reads schemas through these: a keyword it does not know
is refused, a malformed value is refused with the keyword's JSON Pointer, and the object
keys a schema declares (through ``$ref`` and the combinators too) decide what the
``extra_fields`` policy calls extra.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import unquote

from .._errors import ConfigurationError
from ._ecma_regex import compile_ecma

__all__ = [
    "ANNOTATIONS",
    "FAMILIES",
    "FAMILY",
    "FORMATS",
    "GENERIC",
    "JUDGES",
    "TYPE_KEYWORDS",
    "check_values",
    "declared_keys",
    "names_of",
    "patterns_of",
    "pointer",
    "pointer_tokens",
    "properties_of",
    "refuse_dead_keywords",
    "resolve",
]

ANNOTATIONS = frozenset(
    {
        "$schema",
        "$id",
        "$comment",
        "title",
        "description",
        "examples",
        "default",
        "deprecated",
        "readOnly",
        "writeOnly",
        "$defs",
        "definitions",
        "format",
    }
)
#: the keywords of each type family (integer and number share theirs)
FAMILIES: dict[str, frozenset[str]] = {
    "object": frozenset(
        {
            "properties",
            "required",
            "additionalProperties",
            "patternProperties",
            "minProperties",
            "maxProperties",
            "propertyNames",
            "dependentRequired",
        }
    ),
    "array": frozenset(
        {
            "items",
            "prefixItems",
            "minItems",
            "maxItems",
            "uniqueItems",
            "contains",
            "minContains",
            "maxContains",
        }
    ),
    "string": frozenset({"minLength", "maxLength", "pattern"}),
    "number": frozenset(
        {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"}
    ),
}
#: the family of each type name (None: a type without keywords)
FAMILY: dict[str, str | None] = {
    "object": "object",
    "array": "array",
    "string": "string",
    "integer": "number",
    "number": "number",
    "boolean": None,
    "null": None,
}
TYPE_KEYWORDS = frozenset().union(*FAMILIES.values())
#: type keywords compiled as judges beside the type's node (they pass other types)
JUDGES = frozenset(
    {
        "minProperties",
        "maxProperties",
        "propertyNames",
        "dependentRequired",
        "contains",
        "minContains",
        "maxContains",
    }
)
GENERIC = frozenset(
    {"type", "enum", "const", "allOf", "anyOf", "oneOf", "not", "if", "then", "else", "$ref"}
)
#: keywords whose subschemas always or possibly apply, so the keys they declare count
_COMBINATORS = ("allOf", "anyOf", "oneOf")
_CONDITIONALS = ("if", "then", "else")
#: keywords that mean nothing without another beside them (refused rather than ignored)
_NEEDS = {"then": "if", "else": "if", "minContains": "contains", "maxContains": "contains"}
FORMATS = {"date-time": "datetime", "date": "date", "time": "time", "uuid": "uuid"}


def pointer(where: str, *tokens: str | int) -> str:
    """``where`` extended by JSON Pointer tokens (``~`` and ``/`` escaped)."""
    escaped = (str(t).replace("~", "~0").replace("/", "~1") for t in tokens)
    return "/".join((where, *escaped))


def _is_schema(value: Any) -> bool:
    return isinstance(value, Mapping) or isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return value.__class__ is int or (value.__class__ is float and math.isfinite(value))


def _is_count(value: Any) -> bool:
    """A non-negative integer (``2.0`` counts: JSON Schema integers are values, not types)."""
    integral = value.__class__ is int or (value.__class__ is float and value.is_integer())
    return integral and _is_number(value) and value >= 0


def _is_strings(value: Any, *, non_empty: bool = False) -> bool:
    """A list of unique strings."""
    return (
        isinstance(value, list)
        and all(isinstance(v, str) for v in value)
        and len(set(value)) == len(value)
        and (bool(value) or not non_empty)
    )


def _is_schema_map(value: Any) -> bool:
    """An object whose keys are strings and whose values are schemas."""
    return isinstance(value, Mapping) and all(
        isinstance(key, str) and _is_schema(schema) for key, schema in value.items()
    )


def _is_json(value: Any) -> bool:
    """A JSON value: no NaN or infinity, no set or other object, string keys only
    (an ``enum`` or ``const`` holding anything else could never match event data)."""
    if value is None or isinstance(value, (bool, int, str)):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(_is_json(item) for item in value)
    if isinstance(value, Mapping):
        return all(isinstance(k, str) and _is_json(v) for k, v in value.items())
    return False


def _is_definitions(value: Any) -> bool:
    """``$defs``: schemas by name; an array of schemas too (``#/$defs/pair/0``)."""
    return isinstance(value, Mapping) and all(
        isinstance(key, str) and (_is_schema(schema) or _is_schemas(schema))
        for key, schema in value.items()
    )


def _is_schemas(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(_is_schema(v) for v in value)


def _is_type(value: Any) -> bool:
    return isinstance(value, str) or _is_strings(value, non_empty=True)


#: the annotations whose value is a bool
_FLAGS = ("deprecated", "readOnly", "writeOnly")

#: what each keyword's value must be: a test and its description for the error
_VALUES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "type": (_is_type, "a type name or a non-empty array of unique type names"),
    "enum": (
        lambda v: isinstance(v, list) and bool(v) and _is_json(v),
        "a non-empty array of JSON values",
    ),
    "const": (_is_json, "a JSON value"),
    "allOf": (_is_schemas, "a non-empty array of schemas"),
    "anyOf": (_is_schemas, "a non-empty array of schemas"),
    "oneOf": (_is_schemas, "a non-empty array of schemas"),
    "$ref": (lambda v: isinstance(v, str), "a string"),
    **{
        name: (_is_definitions, "an object whose values are schemas (or arrays of them)")
        for name in ("$defs", "definitions")
    },
    # annotations are ignored, but a malformed one is refused as 2020-12's metaschema does
    **{
        name: (lambda v: isinstance(v, str), "a string")
        for name in ("$schema", "$id", "$comment", "title", "description")
    },
    "examples": (lambda v: isinstance(v, list), "an array"),
    **{name: (lambda v: isinstance(v, bool), "a bool") for name in _FLAGS},
    "format": (lambda v: isinstance(v, str), "a string"),
    "properties": (_is_schema_map, "an object whose values are schemas"),
    "required": (_is_strings, "an array of unique strings"),
    "additionalProperties": (_is_schema, "a schema or a bool"),
    "items": (_is_schema, "a schema or a bool (use prefixItems for tuples)"),
    "prefixItems": (_is_schemas, "a non-empty array of schemas"),
    "uniqueItems": (lambda v: isinstance(v, bool), "a bool"),
    "pattern": (lambda v: isinstance(v, str), "a string"),
    **{
        name: (_is_count, "a non-negative integer")
        for name in ("minItems", "maxItems", "minLength", "maxLength")
    },
    **{
        name: (_is_number, "a finite number")
        for name in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
    },
    "multipleOf": (lambda v: _is_number(v) and v > 0, "a finite number > 0"),
    **{name: (_is_schema, "a schema or a bool") for name in ("not", "if", "then", "else")},
    "patternProperties": (_is_schema_map, "an object mapping regular expressions to schemas"),
    "propertyNames": (_is_schema, "a schema or a bool"),
    "dependentRequired": (
        lambda v: (
            isinstance(v, Mapping)
            and all(isinstance(key, str) and _is_strings(names) for key, names in v.items())
        ),
        "an object whose values are arrays of unique strings",
    ),
    "contains": (_is_schema, "a schema or a bool"),
    **{
        name: (_is_count, "a non-negative integer")
        for name in ("minProperties", "maxProperties", "minContains", "maxContains")
    },
}


#: what each member of a keyword's object or array must be, to point at the one that is not
_SCHEMA = (_is_schema, "a schema (an object or a bool)")
_MEMBERS: dict[str, tuple[Callable[[Any], bool], str]] = {
    **dict.fromkeys(
        ("properties", "patternProperties", "allOf", "anyOf", "oneOf", "prefixItems"), _SCHEMA
    ),
    **dict.fromkeys(
        ("$defs", "definitions"),
        (lambda v: _is_schema(v) or _is_schemas(v), "a schema or a non-empty array of schemas"),
    ),
    "dependentRequired": (_is_strings, "an array of unique strings"),
    "required": (lambda v: isinstance(v, str), "a string"),
    "enum": (_is_json, "a JSON value"),
}


def _culprit(keyword: str, value: Any) -> tuple[str | int, Any] | None:
    """The key or index of the member of ``value`` that is malformed, and that member."""
    if keyword not in _MEMBERS:
        return None
    test = _MEMBERS[keyword][0]
    members: Any = ()
    if isinstance(value, Mapping):
        members = value.items()
    elif isinstance(value, list):
        members = enumerate(value)
    return next(((token, member) for token, member in members if not test(member)), None)


def check_values(schema: Mapping[str, Any], where: str) -> None:
    """Refuse a keyword whose value is of the wrong type or out of range."""
    odd = next((key for key in schema if not isinstance(key, str)), None)
    if odd is not None:
        raise ConfigurationError(f"JSON Schema at {where} has a key that is no string: {odd!r}")
    for keyword, value in schema.items():
        test, expected = _VALUES.get(keyword, (None, ""))
        if test is not None and not test(value):
            culprit = _culprit(keyword, value)
            if culprit is not None:  # name the member, and what it must be
                token, value = culprit
                at, expected = pointer(where, keyword, token), _MEMBERS[keyword][1]
            else:
                at = pointer(where, keyword)
            raise ConfigurationError(
                f"JSON Schema keyword {keyword!r} at {at} must be {expected}, got {value!r}"
            )
    for keyword, needed in _NEEDS.items():
        if keyword in schema and needed not in schema:
            raise ConfigurationError(
                f"JSON Schema keyword {keyword!r} at {pointer(where, keyword)} has no effect "
                f"without {needed!r} beside it"
            )
    if "pattern" in schema:
        _check_regex(schema["pattern"], "pattern", pointer(where, "pattern"))
    for regex in schema.get("patternProperties", ()):
        _check_regex(regex, "patternProperties", pointer(where, "patternProperties", regex))


def _check_regex(regex: str, keyword: str, at: str) -> None:
    try:
        compile_ecma(regex)
    except (re.error, RecursionError, OverflowError) as exc:
        raise ConfigurationError(
            f"JSON Schema keyword {keyword!r} at {at} is not a valid regular expression "
            f"({exc}): {regex!r}"
        ) from exc


#: an array index in a JSON Pointer: decimal, no leading zero
_INDEX = re.compile(r"0|[1-9][0-9]*")


def pointer_tokens(ref: Any) -> list[str] | None:
    """The reference tokens of a local ``$ref`` (``#`` and a JSON Pointer), or None.

    The fragment is percent-decoded first (RFC 6901 section 6: ``#/$defs/a%25b`` names
    ``a%b``), then split at ``/`` and unescaped (``~1`` is ``/``, ``~0`` is ``~``).
    """
    if not isinstance(ref, str) or not ref.startswith("#"):
        return None
    try:
        text = unquote(ref[1:], errors="strict")
    except UnicodeDecodeError:
        return None
    if not text:
        return []
    if not text.startswith("/"):
        return None  # a plain-name fragment ($anchor): not supported
    return [token.replace("~1", "/").replace("~0", "~") for token in text[1:].split("/")]


def resolve(root: Mapping[str, Any], ref: Any) -> Any:
    """The schema a local ``$ref`` points to, or None."""
    tokens = pointer_tokens(ref)
    if tokens is None:
        return None
    target: Any = root
    for token in tokens:
        if isinstance(target, list) and _INDEX.fullmatch(token):
            if int(token) >= len(target):
                return None
            target = target[int(token)]
        elif isinstance(target, Mapping) and token in target:
            target = target[token]
        else:
            return None
    return target


# These read schemas not compiled yet (the parts beside a schema's type keywords are
# scanned first): a malformed value declares nothing here, and is refused with its
# JSON Pointer when its own schema is compiled.


def _names(value: Any) -> set[str]:
    """The strings among the keys of an object or the items of an array."""
    if not isinstance(value, (Mapping, list)):
        return set()
    return {name for name in value if isinstance(name, str)}


def names_of(schema: Mapping[str, Any]) -> set[str]:
    return _names(schema.get("properties")) | _names(schema.get("required"))


def properties_of(schema: Mapping[str, Any]) -> set[str]:
    return _names(schema.get("properties"))


def patterns_of(schema: Mapping[str, Any]) -> set[str]:
    return _names(schema.get("patternProperties"))


def declared_keys(
    schema: Any,
    root: Mapping[str, Any],
    pick: Callable[[Mapping[str, Any]], set[str]] = names_of,
    *,
    seen: frozenset[int] = frozenset(),
) -> set[str]:
    """The object keys ``schema`` declares (by default ``properties`` and ``required``).

    Also those of the schemas it combines (``$ref``, ``allOf``, ``anyOf``, ``oneOf``,
    ``if``/``then``/``else``; not ``not``), followed recursively.
    """
    if not isinstance(schema, Mapping) or id(schema) in seen:
        return set()
    names = pick(schema)
    seen = seen | {id(schema)}
    for keyword in _COMBINATORS:
        options = schema.get(keyword)
        for option in options if isinstance(options, list) else ():
            names |= declared_keys(option, root, pick, seen=seen)
    for keyword in _CONDITIONALS:
        names |= declared_keys(schema.get(keyword), root, pick, seen=seen)
    if "$ref" in schema:
        names |= declared_keys(resolve(root, schema["$ref"]), root, pick, seen=seen)
    return names


def refuse_dead_keywords(
    schema: Mapping[str, Any], where: str, type_list: list[str], families: list[str]
) -> None:
    """Refuse keywords of a type that ``type`` excludes: they could never apply."""
    allowed = {FAMILY[name] for name in type_list}
    dead = [f for f in families if f not in allowed]
    if dead:
        keywords = sorted(set().union(*(FAMILIES[f] for f in dead)) & schema.keys())
        raise ConfigurationError(
            f"JSON Schema keyword(s) {', '.join(keywords)} at {where} apply to "
            f"{' and '.join(dead)} values only, which type {schema.get('type', 'object')!r} "
            "excludes: they would never apply"
        )
