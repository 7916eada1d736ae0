"""Compiling JSON Schema documents into validation nodes, keyword by keyword.

The subset accepted is described in docs/validation.md; the nodes are the same as for
Python schemas (``_python_schema``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .._errors import ConfigurationError
from ._nodes import (
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
    TupleNode,
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
_KEYWORDS: dict[str, frozenset[str]] = {
    "object": frozenset({"properties", "required", "additionalProperties"}),
    "array": frozenset({"items", "prefixItems", "minItems", "maxItems", "uniqueItems"}),
    "string": frozenset({"minLength", "maxLength", "pattern"}),
    "integer": frozenset(
        {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"}
    ),
    "boolean": frozenset(),
    "null": frozenset(),
}
_KEYWORDS["number"] = _KEYWORDS["integer"]
_GENERIC = frozenset({"type", "enum", "const", "anyOf", "oneOf", "$ref"})
_FORMATS = {"date-time": "datetime", "date": "date", "time": "time"}


class _JsonSchemaCompiler:
    def __init__(self, root: Mapping[str, Any], extra: Extra) -> None:
        self.root = root
        self.extra: Extra = extra
        self.refs: dict[str, Node] = {}

    def node(self, schema: Any, where: str) -> Node:
        if schema is True or schema == {}:
            return AnyNode()
        if not isinstance(schema, Mapping):
            raise ConfigurationError(f"JSON Schema at {where} must be an object, got {schema!r}")
        allowed = set(_ANNOTATIONS | _GENERIC)
        types = schema.get("type")
        type_list = [types] if isinstance(types, str) else list(types or [])
        if not type_list and ("properties" in schema or "required" in schema):
            type_list = ["object"]
        for name in type_list:
            if name not in _KEYWORDS:
                raise ConfigurationError(f"unknown JSON Schema type {name!r} at {where}")
            allowed |= _KEYWORDS[name]
        unknown = sorted(set(schema) - allowed)
        if unknown:
            raise ConfigurationError(
                f"unsupported JSON Schema keyword(s) {', '.join(unknown)} at {where}"
            )
        if "$ref" in schema:
            return self.ref(schema["$ref"], where)
        if "const" in schema:
            return LiteralNode([schema["const"]])
        if "enum" in schema:
            values = schema["enum"]
            if not isinstance(values, list) or not values:
                raise ConfigurationError(f"'enum' at {where} must be a non-empty array")
            return LiteralNode(values)
        for combinator in ("anyOf", "oneOf"):
            if combinator in schema:
                options = schema[combinator]
                if not isinstance(options, list) or not options:
                    raise ConfigurationError(f"{combinator!r} at {where} must be a non-empty array")
                return UnionNode(
                    [self.node(o, f"{where}/{combinator}/{i}") for i, o in enumerate(options)]
                )
        if not type_list:
            return AnyNode()
        nodes = [self.typed(name, schema, where) for name in type_list]
        return nodes[0] if len(nodes) == 1 else UnionNode(nodes)

    def typed(self, name: str, schema: Mapping[str, Any], where: str) -> Node:
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
            kind = _FORMATS.get(schema.get("format", ""))
            if kind == "datetime":
                return TemporalNode("datetime", True)
            if kind == "date":
                return TemporalNode("date")
            if kind == "time":
                return TemporalNode("time")
            if schema.get("format") == "uuid":
                return UUIDNode()
            return StrNode(
                min_length=schema.get("minLength"),
                max_length=schema.get("maxLength"),
                pattern=schema.get("pattern"),
            )
        if name == "array":
            if "prefixItems" in schema:
                prefix = schema["prefixItems"]
                return TupleNode(
                    [self.node(s, f"{where}/prefixItems/{i}") for i, s in enumerate(prefix)]
                )
            return ListNode(
                self.node(schema.get("items", True), f"{where}/items"),
                min_length=schema.get("minItems"),
                max_length=schema.get("maxItems"),
                unique=bool(schema.get("uniqueItems", False)),
            )
        return self.object(schema, where)

    def object(self, schema: Mapping[str, Any], where: str) -> Node:
        properties = schema.get("properties", {})
        required = set(schema.get("required", []))
        missing = required - set(properties)
        if missing and schema.get("additionalProperties", True) is False:
            raise ConfigurationError(
                f"required but undefined properties {sorted(missing)} at {where}"
            )
        fields = []
        for name, sub in properties.items():
            node = self.node(sub, f"{where}/properties/{name}")
            if name in required:
                fields.append(Field(name, node))
            elif isinstance(sub, Mapping) and "default" in sub:
                fields.append(Field(name, node, required=False, default=sub["default"]))
            else:
                fields.append(Field(name, node, required=False))
        for name in sorted(missing):
            fields.append(Field(name, AnyNode()))
        extra: Extra = self.extra
        extra_node: Node | None = None
        additional = schema.get("additionalProperties")
        if additional is False:
            extra = "forbid"
        elif additional is True:
            extra = "allow"
        elif additional is not None:
            extra = "allow"
            extra_node = self.node(additional, f"{where}/additionalProperties")
        return ObjectNode(str(schema.get("title", "")), fields, extra=extra, extra_node=extra_node)

    def ref(self, ref: Any, where: str) -> Node:
        if not isinstance(ref, str) or not (ref == "#" or ref.startswith("#/")):
            raise ConfigurationError(
                f"only local '#/...' $ref are supported, got {ref!r} at {where}"
            )
        if ref in self.refs:
            return self.refs[ref]
        target: Any = self.root
        for part in ref[2:].split("/") if ref != "#" else ():
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(target, Mapping) or part not in target:
                raise ConfigurationError(f"$ref {ref!r} at {where} points nowhere")
            target = target[part]
        lazy = LazyNode()
        self.refs[ref] = lazy
        lazy.target = self.node(target, ref)
        return lazy


def from_json_schema(schema: Mapping[str, Any], extra: Extra) -> Node:
    """Compile a JSON Schema document (the subset described in docs/validation.md)."""
    return _JsonSchemaCompiler(schema, extra).node(schema, "#")
