"""Compiling JSON Schema documents into validation nodes, keyword by keyword.

The subset accepted is described in docs/validation.md; the nodes are the same as for
Python schemas (``_python_schema``).
"""

from __future__ import annotations

import copy
import functools
import math
import re
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from .._errors import ConfigurationError, ValidationProblem
from ._json_applicators import OneOfNode
from ._json_nodes import AllNode, ArrayNode, ByTypeNode
from ._nodes import (
    INVALID,
    AnyNode,
    BoolNode,
    Extra,
    Field,
    LazyNode,
    ListNode,
    LiteralNode,
    Node,
    NoneNode,
    NumberNode,
    ObjectNode,
    StrNode,
    TemporalNode,
    UnionNode,
    UUIDNode,
)

__all__ = ["from_json_schema"]

_ANNOTATIONS = frozenset(
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
_FAMILIES: dict[str, frozenset[str]] = {
    "object": frozenset({"properties", "required", "additionalProperties"}),
    "array": frozenset({"items", "prefixItems", "minItems", "maxItems", "uniqueItems"}),
    "string": frozenset({"minLength", "maxLength", "pattern"}),
    "number": frozenset(
        {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"}
    ),
}
#: the family of each type name (None: a type without keywords)
_FAMILY: dict[str, str | None] = {
    "object": "object",
    "array": "array",
    "string": "string",
    "integer": "number",
    "number": "number",
    "boolean": None,
    "null": None,
}
_TYPE_KEYWORDS = frozenset().union(*_FAMILIES.values())
_GENERIC = frozenset({"type", "enum", "const", "allOf", "anyOf", "oneOf", "$ref"})
#: keywords whose subschemas always or possibly apply, so the keys they declare count
_COMBINATORS = ("allOf", "anyOf", "oneOf")
_FORMATS = {"date-time": "datetime", "date": "date", "time": "time"}


def _pointer(where: str, *tokens: str | int) -> str:
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


def _is_schemas(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(_is_schema(v) for v in value)


def _is_type(value: Any) -> bool:
    return isinstance(value, str) or _is_strings(value, non_empty=True)


#: what each keyword's value must be: a test and its description for the error
_VALUES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "type": (_is_type, "a type name or a non-empty array of unique type names"),
    "enum": (lambda v: isinstance(v, list) and bool(v), "a non-empty array"),
    "allOf": (_is_schemas, "a non-empty array of schemas"),
    "anyOf": (_is_schemas, "a non-empty array of schemas"),
    "oneOf": (_is_schemas, "a non-empty array of schemas"),
    "$ref": (lambda v: isinstance(v, str), "a string"),
    "$defs": (lambda v: isinstance(v, Mapping), "an object"),
    "definitions": (lambda v: isinstance(v, Mapping), "an object"),
    "format": (lambda v: isinstance(v, str), "a string"),
    "properties": (
        lambda v: (
            isinstance(v, Mapping)
            and all(isinstance(k, str) and _is_schema(s) for k, s in v.items())
        ),
        "an object whose values are schemas",
    ),
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
}


def _check_values(schema: Mapping[str, Any], where: str) -> None:
    """Refuse a keyword whose value is of the wrong type or out of range."""
    for keyword, value in schema.items():
        test, expected = _VALUES.get(keyword, (None, ""))
        if test is not None and not test(value):
            raise ConfigurationError(
                f"JSON Schema keyword {keyword!r} at {_pointer(where, keyword)} must be "
                f"{expected}, got {value!r}"
            )
    if "pattern" in schema:
        try:
            re.compile(schema["pattern"])
        except (re.error, RecursionError, OverflowError) as exc:
            raise ConfigurationError(
                f"JSON Schema keyword 'pattern' at {_pointer(where, 'pattern')} is not a valid "
                f"regular expression ({exc}): {schema['pattern']!r}"
            ) from exc


def _count(value: Any) -> int | None:
    return None if value is None else int(value)


class _Part(NamedTuple):
    """A keyword beside the type keywords: what declares its object keys, its builder."""

    declares: Any
    build: Callable[[bool], Node]


class _JsonSchemaCompiler:
    def __init__(self, root: Mapping[str, Any], extra: Extra) -> None:
        self.root = root
        self.extra: Extra = extra
        self.refs: dict[tuple[str, bool], Node] = {}
        #: (node, default, JSON Pointer) of every property default, checked at the end
        self.defaults: list[tuple[Node, Any, str]] = []

    def node(self, schema: Any, where: str, open_: bool = False) -> Node:
        """The node for ``schema``; ``open_``: its own object keeps undeclared keys.

        Parts of a schema object that only judge (``anyOf`` next to ``properties``, say)
        are compiled open: the ``extra_fields`` policy is applied once, by the part made
        of the type keywords (or by the :class:`AllNode` combining the parts), to keys
        that no part declares.
        """
        if schema is True or schema == {}:
            return AnyNode()
        if schema is False:
            raise ConfigurationError(
                f"the schema false (nothing valid) at {where} is only supported as "
                "additionalProperties"
            )
        if not isinstance(schema, Mapping):
            raise ConfigurationError(f"JSON Schema at {where} must be an object, got {schema!r}")
        _check_values(schema, where)
        unknown = sorted(set(schema) - _ANNOTATIONS - _GENERIC - _TYPE_KEYWORDS)
        if unknown:
            raise ConfigurationError(
                f"unsupported JSON Schema keyword(s) {', '.join(unknown)} at {where}"
            )
        types = schema.get("type")
        type_list = [types] if isinstance(types, str) else list(types or [])
        if not type_list and ("properties" in schema or "required" in schema):
            type_list = ["object"]  # what such a schema always meant here (not 2020-12)
        for name in type_list:
            if name not in _FAMILY:
                raise ConfigurationError(
                    f"unknown JSON Schema type {name!r} at {_pointer(where, 'type')}"
                )
        families = [f for f, keywords in _FAMILIES.items() if keywords & schema.keys()]
        if type_list:
            _refuse_dead_keywords(schema, where, type_list, families)
        parts = self.parts(schema, where)
        if type_list:
            nodes = [self.typed(name, schema, where, open_) for name in type_list]
            main = nodes[0] if len(nodes) == 1 else UnionNode(nodes)
            if not parts:
                return main
            return self.combined(schema, main, parts)
        if families:  # 2020-12: keywords of a type apply to values of that type only
            by_type = ByTypeNode({f: self.typed(f, schema, where, open_, False) for f in families})
            if not parts:
                return by_type
            if open_ or "object" in families:
                return self.combined(schema, by_type, parts)
            parts.insert(0, _Part(None, lambda o: by_type))
        if not parts:
            return AnyNode()
        if len(parts) == 1:
            return parts[0].build(open_)
        return self.combined(schema, None, parts, extra=None if open_ else self.extra)

    def parts(self, schema: Mapping[str, Any], where: str) -> list[_Part]:
        """The keywords beside the type keywords, each a part that must accept the value.

        Parts that can convert a value come first: without type keywords the first part
        gives the converted value.
        """
        parts: list[_Part] = []
        if "$ref" in schema:
            target = _resolve(self.root, schema["$ref"])
            parts.append(_Part(target, lambda o: self.ref(schema["$ref"], where, o)))
        for index, branch in enumerate(schema.get("allOf", ())):
            at = _pointer(where, "allOf", index)
            parts.append(_Part(branch, functools.partial(self.node, branch, at)))
        if "anyOf" in schema:
            build = functools.partial(self.any_of, schema["anyOf"], where)
            parts.append(_Part({"anyOf": schema["anyOf"]}, build))
        if "oneOf" in schema:
            build = functools.partial(self.one_of, schema["oneOf"], where)
            parts.append(_Part({"oneOf": schema["oneOf"]}, build))
        if "const" in schema:
            parts.append(_Part(None, lambda o: LiteralNode([schema["const"]], json_equality=True)))
        if "enum" in schema:
            parts.append(_Part(None, lambda o: LiteralNode(schema["enum"], json_equality=True)))
        return parts

    def combined(
        self,
        schema: Mapping[str, Any],
        main: Node | None,
        parts: list[_Part],
        extra: Extra | None = None,
    ) -> Node:
        """An :class:`AllNode`: ``main`` (or the first part) and every part.

        ``main`` is the node of the type keywords (compiled with the policy); keys the
        parts declare are added to its object as placeholders, so they are no extras. A
        schema without type keywords compiles every part open, and its ``AllNode``
        applies the ``extra`` policy to keys no part declares.
        """
        typed = main is not None
        if main is None:
            first, *rest = parts
            main = first.build(True)
            taken = _declared(first.declares, self.root, _properties)
        else:
            rest = parts
            taken = _properties(schema)
            target = _object_of(main)
            if target is not None:
                declared = set().union(*(_declared(p.declares, self.root) for p in parts))
                for name in sorted(declared - target.fields.keys()):
                    target.fields[name] = Field(name, AnyNode(), required=False)
        owned = []
        for part in rest:  # a key's value comes from the first part giving it a schema
            keys = _declared(part.declares, self.root, _properties) - taken
            owned.append(frozenset(keys))
            taken |= keys
        checks = [part.build(True) for part in rest]
        if typed:
            return AllNode(main, checks, owned)
        if extra is None:
            return AllNode(main, checks, owned, typed=False)
        declared = set().union(*(_declared(p.declares, self.root) for p in parts))
        patterns = set().union(*(_declared(p.declares, self.root, _patterns) for p in parts))
        return AllNode(
            main,
            checks,
            owned,
            typed=False,
            extra=extra,
            declared=frozenset(declared),
            patterns=sorted(patterns),
        )

    def any_of(self, options: list[Any], where: str, open_: bool) -> Node:
        nodes = [self.node(o, _pointer(where, "anyOf", i), open_) for i, o in enumerate(options)]
        return nodes[0] if len(nodes) == 1 else UnionNode(nodes)

    def one_of(self, options: list[Any], where: str, open_: bool) -> Node:
        pointers = [_pointer(where, "oneOf", i) for i in range(len(options))]
        nodes = [self.node(o, at, open_) for o, at in zip(options, pointers, strict=True)]
        return nodes[0] if len(nodes) == 1 else OneOfNode(nodes, pointers)

    def typed(
        self, name: str, schema: Mapping[str, Any], where: str, open_: bool, formats: bool = True
    ) -> Node:
        """The node of type ``name`` and its keywords (``format`` converts if ``formats``)."""
        if name == "null":
            return NoneNode()
        if name == "boolean":
            return BoolNode()
        if name in ("integer", "number"):
            gt, lt = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
            return NumberNode(
                "int" if name == "integer" else "number",
                gt=gt,
                ge=schema.get("minimum"),
                lt=lt,
                le=schema.get("maximum"),
                multiple_of=schema.get("multipleOf"),
            )
        if name == "string":
            kind = _FORMATS.get(schema.get("format", "")) if formats else None
            if kind == "datetime":
                return TemporalNode("datetime", True)
            if kind == "date":
                return TemporalNode("date")
            if kind == "time":
                return TemporalNode("time")
            if formats and schema.get("format") == "uuid":
                return UUIDNode()
            return StrNode(
                min_length=_count(schema.get("minLength")),
                max_length=_count(schema.get("maxLength")),
                pattern=schema.get("pattern"),
            )
        if name == "array":
            if "prefixItems" in schema:  # 2020-12: shorter arrays too; the rest by items
                prefix = schema["prefixItems"]
                items = schema.get("items", True)
                return ArrayNode(
                    [self.node(s, _pointer(where, "prefixItems", i)) for i, s in enumerate(prefix)],
                    None if items is False else self.node(items, _pointer(where, "items")),
                    min_length=_count(schema.get("minItems")),
                    max_length=_count(schema.get("maxItems")),
                    unique=schema.get("uniqueItems", False),
                )
            return ListNode(
                self.node(schema.get("items", True), _pointer(where, "items")),
                min_length=_count(schema.get("minItems")),
                max_length=_count(schema.get("maxItems")),
                unique=schema.get("uniqueItems", False),
            )
        return self.object(schema, where, open_)

    def object(self, schema: Mapping[str, Any], where: str, open_: bool) -> Node:
        properties = schema.get("properties", {})
        required = set(schema.get("required", []))
        missing = required - set(properties)
        if missing and schema.get("additionalProperties", True) is False:
            raise ConfigurationError(
                f"required but undefined properties {sorted(missing)} at {where}"
            )
        fields = []
        for name, sub in properties.items():
            node = self.node(sub, _pointer(where, "properties", name))
            if name in required:
                fields.append(Field(name, node))
            elif isinstance(sub, Mapping) and "default" in sub:
                fields.append(Field(name, node, required=False, default=sub["default"]))
                pointer = _pointer(where, "properties", name, "default")
                self.defaults.append((node, sub["default"], pointer))
            else:
                fields.append(Field(name, node, required=False))
        for name in sorted(missing):
            fields.append(Field(name, AnyNode()))
        extra: Extra = "allow" if open_ else self.extra
        extra_node: Node | None = None
        additional = schema.get("additionalProperties")
        if additional is False:
            extra = "forbid"
        elif additional is True:
            extra = "allow"
        elif additional is not None:
            extra = "allow"
            extra_node = self.node(additional, _pointer(where, "additionalProperties"))
        return ObjectNode(str(schema.get("title", "")), fields, extra=extra, extra_node=extra_node)

    def ref(self, ref: Any, where: str, open_: bool = False) -> Node:
        if not isinstance(ref, str) or not (ref == "#" or ref.startswith("#/")):
            raise ConfigurationError(
                f"only local '#/...' $ref are supported, got {ref!r} at {where}"
            )
        if (ref, open_) in self.refs:
            return self.refs[ref, open_]
        target: Any = self.root
        for part in ref[2:].split("/") if ref != "#" else ():
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(target, Mapping) or part not in target:
                raise ConfigurationError(f"$ref {ref!r} at {where} points nowhere")
            target = target[part]
        lazy = LazyNode()
        self.refs[ref, open_] = lazy
        lazy.target = self.node(target, ref, open_)
        return lazy

    def check_defaults(self) -> None:
        """Refuse a ``default`` its own schema refuses (it would be put into the data)."""
        for node, default, pointer in self.defaults:
            problems: list[ValidationProblem] = []
            try:
                result = node.check(copy.deepcopy(default), "", problems)
            except RecursionError:
                result = INVALID
            if problems or result is INVALID:
                why = "; ".join(
                    f"{p.path or 'value'}: {p.message}, expected {p.expected}" for p in problems
                )
                raise ConfigurationError(
                    f"JSON Schema 'default' at {pointer} does not match its schema "
                    f"({why or 'too deeply nested'}): {default!r}"
                )


def _resolve(root: Mapping[str, Any], ref: Any) -> Any:
    """The schema a local ``$ref`` points to, or None."""
    if not isinstance(ref, str) or not (ref == "#" or ref.startswith("#/")):
        return None
    target: Any = root
    for part in ref[2:].split("/") if ref != "#" else ():
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(target, Mapping) or part not in target:
            return None
        target = target[part]
    return target


def _names(schema: Mapping[str, Any]) -> set[str]:
    return set(schema.get("properties", {})) | set(schema.get("required", []))


def _properties(schema: Mapping[str, Any]) -> set[str]:
    return set(schema.get("properties", {}))


def _patterns(schema: Mapping[str, Any]) -> set[str]:
    return set(schema.get("patternProperties", {}))


def _declared(
    schema: Any,
    root: Mapping[str, Any],
    pick: Callable[[Mapping[str, Any]], set[str]] = _names,
    *,
    top: bool = False,
    seen: frozenset[int] = frozenset(),
) -> set[str]:
    """The object keys ``schema`` declares (by default ``properties`` and ``required``).

    With ``top`` only its own keywords count; otherwise also those of the schemas it
    combines (``$ref``, ``allOf``, ``anyOf``, ``oneOf``), followed recursively.
    """
    if not isinstance(schema, Mapping) or id(schema) in seen:
        return set()
    names = pick(schema)
    if top:
        return names
    seen = seen | {id(schema)}
    for keyword in _COMBINATORS:
        for option in schema.get(keyword, []):
            names |= _declared(option, root, pick, seen=seen)
    if "$ref" in schema:
        names |= _declared(_resolve(root, schema["$ref"]), root, pick, seen=seen)
    return names


def _object_of(node: Node) -> ObjectNode | None:
    """The object node of the type keywords (to receive placeholders), if any."""
    if isinstance(node, ObjectNode):
        return node
    options: Any = ()
    if isinstance(node, UnionNode):
        options = node.options
    elif isinstance(node, ByTypeNode):
        options = node.nodes.values()
    return next((n for n in options if isinstance(n, ObjectNode)), None)


def _refuse_dead_keywords(
    schema: Mapping[str, Any], where: str, type_list: list[str], families: list[str]
) -> None:
    """Refuse keywords of a type that ``type`` excludes: they could never apply."""
    allowed = {_FAMILY[name] for name in type_list}
    dead = [f for f in families if f not in allowed]
    if dead:
        keywords = sorted(set().union(*(_FAMILIES[f] for f in dead)) & schema.keys())
        raise ConfigurationError(
            f"JSON Schema keyword(s) {', '.join(keywords)} at {where} apply to "
            f"{' and '.join(dead)} values only, which type {schema.get('type', 'object')!r} "
            "excludes: they would never apply"
        )


def from_json_schema(schema: Mapping[str, Any], extra: Extra) -> Node:
    """Compile a JSON Schema document (the subset described in docs/validation.md)."""
    compiler = _JsonSchemaCompiler(schema, extra)
    node = compiler.node(schema, "#")
    compiler.check_defaults()
    return node
