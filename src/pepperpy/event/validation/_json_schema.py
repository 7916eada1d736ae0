"""Compiling JSON Schema documents into validation nodes, keyword by keyword.

The subset accepted is described in docs/validation.md; the nodes are the same as for
Python schemas (``_python_schema``).
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

from .._errors import ConfigurationError, ValidationProblem
from ._ecma_regex import compile_ecma
from ._json_applicators import ContainsNode, IfNode, NotNode, OneOfNode, PropertyNamesNode
from ._json_keywords import (
    ANNOTATIONS,
    FAMILIES,
    FAMILY,
    FORMATS,
    GENERIC,
    JUDGES,
    TYPE_KEYWORDS,
    check_values,
    declared_keys,
    patterns_of,
    pointer,
    pointer_tokens,
    properties_of,
    refuse_dead_keywords,
    resolve,
)
from ._json_nodes import (
    AllNode,
    ArrayNode,
    ByTypeNode,
    DependentRequiredNode,
    NeverNode,
    PropertyCountNode,
    TimeTextNode,
)
from ._nodes import (
    INVALID,
    AnyNode,
    BoolNode,
    DictNode,
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


def _count(value: Any) -> int | None:
    return None if value is None else int(value)


class _Part(NamedTuple):
    """A keyword beside the type keywords: what declares its object keys, its builder.

    A ``judge`` passes values it does not apply to unchecked: it is never the part
    that gives the converted value.
    """

    declares: Any
    build: Callable[[bool], Node]
    judge: bool = False


#: keywords whose schemas declare object keys for the parts beside them
_DECLARING = ("$ref", "allOf", "anyOf", "oneOf", "if", "then", "else")

#: keywords that judge a string as text (also when a format converts it)
_STRING_KEYWORDS = frozenset({"minLength", "maxLength", "pattern"})


class _JsonSchemaCompiler:
    def __init__(self, root: Mapping[str, Any], extra: Extra) -> None:
        self.root = root
        self.extra: Extra = extra
        self.refs: dict[tuple[str, bool], Node] = {}
        #: (field, JSON Pointer) of every property default, checked (and converted) at the end
        self.defaults: list[tuple[Field, str]] = []
        #: (schema, JSON Pointer) of every ``$defs``/``definitions`` entry met, compiled
        #: at the end whether a ``$ref`` uses it or not (see ``check_definitions``)
        self.definitions: list[tuple[Any, str]] = []
        #: whether a $ref looping back without descending is refused (not in unused $defs)
        self.refuse_loops = True

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
            return NeverNode()
        if not isinstance(schema, Mapping):
            raise ConfigurationError(f"JSON Schema at {where} must be an object, got {schema!r}")
        check_values(schema, where)
        for keyword in ("$defs", "definitions"):
            for name, sub in schema.get(keyword, {}).items():
                at = pointer(where, keyword, name)
                if isinstance(sub, list):  # an array of schemas (``#/$defs/pair/0``)
                    self.definitions.extend((s, pointer(at, i)) for i, s in enumerate(sub))
                else:
                    self.definitions.append((sub, at))
        unknown = sorted(set(schema) - ANNOTATIONS - GENERIC - TYPE_KEYWORDS)
        if unknown:
            raise ConfigurationError(
                f"unsupported JSON Schema keyword(s) {', '.join(unknown)} at {where}"
            )
        types = schema.get("type")
        type_list = [types] if isinstance(types, str) else list(types or [])
        if not type_list and ("properties" in schema or "required" in schema):
            type_list = ["object"]  # what such a schema always meant here (not 2020-12)
        for name in type_list:
            if name not in FAMILY:
                raise ConfigurationError(
                    f"unknown JSON Schema type {name!r} at {pointer(where, 'type')}"
                )
        families = [f for f, keywords in FAMILIES.items() if keywords & schema.keys()]
        if type_list:
            refuse_dead_keywords(schema, where, type_list, families)
        # judges alone (minProperties, contains) need no node of their type
        families = [f for f in families if (FAMILIES[f] - JUDGES) & schema.keys()]
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
        if parts[0].judge:  # nothing converts: the value as it is, if it is JSON
            parts.insert(0, _Part(None, lambda o: AnyNode()))
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
            target = resolve(self.root, schema["$ref"])
            parts.append(_Part(target, lambda o: self.ref(schema["$ref"], where, o)))
        for index, branch in enumerate(schema.get("allOf", ())):
            at = pointer(where, "allOf", index)
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
        if "not" in schema:
            not_at = pointer(where, "not")
            parts.append(_Part(None, functools.partial(self.not_, schema["not"], not_at), True))
        if "if" in schema:
            branches = {k: schema[k] for k in ("if", "then", "else") if k in schema}
            parts.append(_Part(branches, lambda o: self.if_(branches, where), True))
        parts.extend(_Part(None, build, True) for build in self.judges(schema, where))
        return parts

    def if_(self, branches: Mapping[str, Any], where: str) -> Node:
        nodes = {k: self.node(s, pointer(where, k), True) for k, s in branches.items()}
        return IfNode(nodes["if"], nodes.get("then"), nodes.get("else"))

    def not_(self, schema: Any, at: str, open_: bool) -> Node:
        return NotNode(self.node(schema, at, True), at)

    def judges(self, schema: Mapping[str, Any], where: str) -> list[Callable[[bool], Node]]:
        """Builders of the type keywords that only judge (they pass other types).

        Each builder gets its values bound now (``functools.partial``): a closure would
        read variables a later keyword reassigns (``maxProperties`` once became
        ``maxContains`` that way).
        """
        judges: list[Callable[[bool], Node]] = []
        if "minProperties" in schema or "maxProperties" in schema:
            count = PropertyCountNode(
                _count(schema.get("minProperties")), _count(schema.get("maxProperties"))
            )
            judges.append(functools.partial(_built, count))
        if "dependentRequired" in schema:
            required = DependentRequiredNode(schema["dependentRequired"])
            judges.append(functools.partial(_built, required))
        if "propertyNames" in schema:
            names_at = pointer(where, "propertyNames")
            judges.append(functools.partial(self.property_names, schema["propertyNames"], names_at))
        if "contains" in schema:
            judges.append(
                functools.partial(
                    self.contains,
                    schema["contains"],
                    pointer(where, "contains"),
                    _count(schema.get("minContains", 1)) or 0,
                    _count(schema.get("maxContains")),
                )
            )
        return judges

    def property_names(self, schema: Any, at: str, open_: bool) -> Node:
        return PropertyNamesNode(self.node(schema, at, True))

    def contains(self, schema: Any, at: str, least: int, most: int | None, open_: bool) -> Node:
        return ContainsNode(self.node(schema, at, True), at, least=least, most=most)

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
            taken = declared_keys(first.declares, self.root, properties_of)
        else:
            rest = parts
            taken = properties_of(schema)
            target = _object_of(main)
            if target is not None:
                declared = set().union(*(declared_keys(p.declares, self.root) for p in parts))
                for name in sorted(declared - target.fields.keys()):
                    target.fields[name] = Field(name, AnyNode(), required=False)
                known = {regex for regex, _ in target.patterns}
                for regex in _compiled_patterns(sorted(self.patterns(parts))):
                    if regex not in known:
                        target.patterns += ((regex, AnyNode()),)
        owned = []
        for part in rest:  # a key's value comes from the first part giving it a schema
            keys = declared_keys(part.declares, self.root, properties_of) - taken
            owned.append(frozenset(keys))
            taken |= keys
        checks = [part.build(True) for part in rest]
        if typed:
            return AllNode(main, checks, owned)
        declared = set().union(*(declared_keys(p.declares, self.root) for p in parts))
        patterns = self.patterns(parts)
        if extra is None or not (declared or patterns):  # no part speaks of keys
            return AllNode(main, checks, owned, typed=False)
        return AllNode(
            main,
            checks,
            owned,
            typed=False,
            extra=extra,
            declared=frozenset(declared),
            patterns=sorted(patterns),
        )

    def patterns(self, parts: list[_Part]) -> set[str]:
        """The ``patternProperties`` patterns the parts declare."""
        return set().union(*(declared_keys(p.declares, self.root, patterns_of) for p in parts))

    def any_of(self, options: list[Any], where: str, open_: bool) -> Node:
        nodes = [self.node(o, pointer(where, "anyOf", i), open_) for i, o in enumerate(options)]
        return nodes[0] if len(nodes) == 1 else UnionNode(nodes)

    def one_of(self, options: list[Any], where: str, open_: bool) -> Node:
        pointers = [pointer(where, "oneOf", i) for i in range(len(options))]
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
            text = StrNode(
                min_length=_count(schema.get("minLength")),
                max_length=_count(schema.get("maxLength")),
                pattern=schema.get("pattern"),
                json_text=True,
                ecma=True,
            )
            kind = FORMATS.get(schema.get("format", "")) if formats else None
            converted: Node | None = None
            if kind == "datetime":
                converted = TemporalNode("datetime", True, rfc=True)
            elif kind == "date":
                converted = TemporalNode("date")
            elif kind == "time":
                converted = TimeTextNode()
            elif kind == "uuid":
                converted = UUIDNode(rfc=True)
            if converted is None:
                return text
            if _STRING_KEYWORDS.isdisjoint(schema):
                return converted
            # the length and pattern keywords judge the JSON text: the string given, or
            # the text of a value converted before (validated data, validated again)
            return AllNode(converted, [text])
        if name == "array":
            if "prefixItems" in schema:  # 2020-12: shorter arrays too; the rest by items
                prefix = schema["prefixItems"]
                items = schema.get("items", True)
                return ArrayNode(
                    [self.node(s, pointer(where, "prefixItems", i)) for i, s in enumerate(prefix)],
                    None if items is False else self.node(items, pointer(where, "items")),
                    min_length=_count(schema.get("minItems")),
                    max_length=_count(schema.get("maxItems")),
                    unique="json" if schema.get("uniqueItems") else None,
                )
            return ListNode(
                self.node(schema.get("items", True), pointer(where, "items")),
                min_length=_count(schema.get("minItems")),
                max_length=_count(schema.get("maxItems")),
                unique="json" if schema.get("uniqueItems") else None,
            )
        return self.object(schema, where, open_)

    def object(self, schema: Mapping[str, Any], where: str, open_: bool) -> Node:
        properties = schema.get("properties", {})
        required = set(schema.get("required", []))
        patterns = [
            (regex, self.node(sub, pointer(where, "patternProperties", regex)))
            for regex, sub in schema.get("patternProperties", {}).items()
        ]

        def by_patterns(name: str) -> list[Node]:
            return [node for regex, node in patterns if compile_ecma(regex).search(name)]

        missing = required - set(properties)
        if schema.get("additionalProperties", True) is False and missing:
            self.refuse_undefined(schema, where, sorted(n for n in missing if not by_patterns(n)))
        fields = []
        for name, sub in properties.items():
            node = self.node(sub, pointer(where, "properties", name))
            if by_patterns(name):  # 2020-12: a matching patternProperties applies too
                node = AllNode(node, by_patterns(name))
            if name in required:
                fields.append(Field(name, node))
            elif isinstance(sub, Mapping) and "default" in sub:
                field = Field(name, node, required=False, default=sub["default"])
                fields.append(field)
                self.defaults.append((field, pointer(where, "properties", name, "default")))
            else:
                fields.append(Field(name, node, required=False))
        extra: Extra = "allow" if open_ else self.extra
        extra_node: Node | None = None
        additional = schema.get("additionalProperties")
        if additional is False:
            extra = "forbid"
        elif additional is True:
            extra = "allow"
        elif additional is not None:
            extra = "allow"
            extra_node = self.node(additional, pointer(where, "additionalProperties"))
        # a required key that neither properties nor patternProperties declares is an
        # additional property: additionalProperties judges it (unless a part beside
        # declares it, see ``combined``)
        beside = self.declared_beside(schema) if missing and extra_node is not None else set()
        for name in sorted(missing):
            additional_node = extra_node if name not in beside else None
            first, *rest = by_patterns(name) or [additional_node or AnyNode()]
            fields.append(Field(name, AllNode(first, rest) if rest else first))
        title = str(schema.get("title", ""))
        return ObjectNode(title, fields, extra=extra, extra_node=extra_node, patterns=patterns)

    def refuse_undefined(self, schema: Mapping[str, Any], where: str, names: list[str]) -> None:
        """Refuse required ``names`` that ``additionalProperties: false`` forbids.

        A key that a part beside it declares (``$ref``, ``allOf``, ``anyOf``, ``oneOf``,
        ``if``/``then``/``else``, by ``properties``, ``required`` or
        ``patternProperties``) is let through (see ``combined``); any other could never
        be present, so no object would be valid.
        """
        declared = self.declared_beside(schema)
        undefined = [name for name in names if name not in declared]
        if undefined:
            raise ConfigurationError(
                f"JSON Schema at {where} requires {', '.join(map(repr, undefined))}, which "
                "additionalProperties: false forbids (no properties, patternProperties or "
                "part beside them declares it): no object could be valid"
            )

    def declared_beside(self, schema: Mapping[str, Any]) -> set[str]:
        """The keys that the parts beside ``schema``'s type keywords declare (``$ref``,
        ``allOf``, ``anyOf``, ``oneOf``, ``if``/``then``/``else``, by ``properties``,
        ``required`` or ``patternProperties``), of those its ``required`` names."""
        parts = {k: schema[k] for k in _DECLARING if k in schema}
        declared = declared_keys(parts, self.root)
        patterns = _compiled_patterns(declared_keys(parts, self.root, patterns_of))
        return {
            name
            for name in schema.get("required", [])
            if name in declared or any(p.search(name) for p in patterns)
        }

    def ref(self, ref: Any, where: str, open_: bool = False) -> Node:
        if pointer_tokens(ref) is None:
            raise ConfigurationError(
                f"only local '#/...' $ref are supported, got {ref!r} at {where}"
            )
        if (ref, open_) in self.refs:
            return self.refs[ref, open_]
        target = resolve(self.root, ref)
        if target is None:
            raise ConfigurationError(f"$ref {ref!r} at {where} points nowhere")
        lazy = LazyNode()
        self.refs[ref, open_] = lazy
        lazy.target = self.node(target, ref, open_)
        # at once: the node that holds this one may ask for its ``expected`` (a loop)
        try:
            _refuse_empty_cycles({(ref, open_): lazy})
        except ConfigurationError:
            if self.refuse_loops:
                raise
            lazy.target = AnyNode()  # in a definition no $ref uses: never run
        return lazy

    def check_definitions(self) -> None:
        """Compile every definition, used or not: one no ``$ref`` reaches is refused
        like any other part of the schema when malformed (``{"$defs": {"a": {"type":
        "strnig"}}}``), never accepted silently. Each is compiled apart (a scratch
        compiler), so an unused one changes nothing that is used."""
        done: set[int] = set()
        scratch = _JsonSchemaCompiler(self.root, self.extra)
        scratch.definitions = self.definitions  # the definitions inside them come next
        scratch.refuse_loops = False
        while self.definitions:
            schema, where = self.definitions.pop()
            if id(schema) not in done:
                done.add(id(schema))
                scratch.node(schema, where)
        scratch.check_defaults()

    def check_defaults(self) -> None:
        """Refuse a ``default`` its own schema refuses (it would be put into the data).

        An accepted default is stored as its node converts it (a ``format: date`` string
        becomes a ``date``): an absent property then gets what the same value sent
        explicitly gives, and the data validates again unchanged.
        """
        for field, at in self.defaults:
            default = field.default
            problems: list[ValidationProblem] = []
            try:
                result = field.node.check(copy.deepcopy(default), "", problems)
            except RecursionError:
                result = INVALID
            if problems or result is INVALID:
                why = "; ".join(
                    f"{p.path or 'value'}: {p.message}, expected {p.expected}" for p in problems
                )
                raise ConfigurationError(
                    f"JSON Schema 'default' at {at} does not match its schema "
                    f"({why or 'too deeply nested'}): {default!r}"
                )
            field.default = result


def _compiled_patterns(sources: Iterable[str]) -> list[re.Pattern[str]]:
    """The ``patternProperties`` patterns of parts not compiled yet, those that compile:
    an invalid one is refused with its JSON Pointer when its own schema is compiled."""
    compiled = []
    for source in sources:
        try:
            compiled.append(compile_ecma(source))
        except (re.error, RecursionError, OverflowError):
            continue
    return compiled


def _built(node: Node, open_: bool) -> Node:
    """A part's builder for a node made beforehand (it holds no subschema)."""
    return node


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


#: nodes that check parts of their value (items, property values, keys), never the value
#: itself: a ``$ref`` reached through one of them has less left to check
_DESCENDING = (
    ObjectNode,
    ListNode,
    ArrayNode,
    DictNode,
    TupleNode,
    ContainsNode,
    PropertyNamesNode,
)


def _same_value_children(node: Node) -> tuple[Node, ...]:
    """The nodes ``node`` hands its own value to (not a part of it)."""
    if isinstance(node, LazyNode):
        return () if node.target is None else (node.target,)
    if isinstance(node, UnionNode):
        return node.options
    if isinstance(node, _DESCENDING):
        return ()
    return tuple(node.children())


def _refuse_empty_cycles(refs: Mapping[tuple[str, bool], Node]) -> None:
    """Refuse a ``$ref`` that leads back to itself without descending into the value.

    ``{"$ref": "#"}``, or two ``$defs`` naming each other, would check the same value
    forever: every validation would end in a recursion error.
    """
    for (ref, _), lazy in refs.items():
        seen: set[int] = set()
        stack = list(_same_value_children(lazy))
        while stack:
            current = stack.pop()
            if current is lazy:
                raise ConfigurationError(
                    f"JSON Schema $ref {ref!r} refers back to itself without descending "
                    "into an object's properties or an array's items: no value could "
                    "ever be decided"
                )
            if id(current) not in seen:
                seen.add(id(current))
                stack.extend(_same_value_children(current))


def from_json_schema(schema: Mapping[str, Any], extra: Extra) -> Node:
    """Compile a JSON Schema document (the subset described in docs/validation.md)."""
    compiler = _JsonSchemaCompiler(schema, extra)
    node = compiler.node(schema, "#")
    _refuse_empty_cycles(compiler.refs)
    compiler.check_defaults()
    compiler.check_definitions()
    return node
