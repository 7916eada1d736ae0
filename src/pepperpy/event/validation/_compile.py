"""Compiling schemas into nodes, and nodes into msgspec types for the fast path.

Python schemas (plain annotated classes, dataclasses, TypedDicts, msgspec Structs) are
read through ``msgspec.inspect.type_info``, which already understands ``Optional``,
unions, ``Literal``, enums, datetimes and ``Annotated[..., msgspec.Meta(...)]``
constraints. JSON Schema documents are read keyword by keyword. Both end as the same
node tree, which ``fast_type`` turns into generated msgspec Structs so that valid data is
checked and converted in C by ``msgspec.convert(..., strict=True)``.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import decimal
import keyword
import types
import typing
import uuid
from collections import abc
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal, Union

from .._deps import require
from .._errors import ConfigurationError
from ._nodes import (
    INT_MIN,
    AnyNode,
    BoolNode,
    BytesNode,
    DecimalNode,
    DictNode,
    EnumNode,
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

__all__ = ["from_json_schema", "from_python_type", "fast_type", "is_pydantic_model"]


def _msgspec() -> Any:
    return require("msgspec", extra="validation", feature="EventValidator")


def is_pydantic_model(schema: Any) -> bool:
    """True for a pydantic (v2) model class."""
    return isinstance(schema, type) and hasattr(schema, "__pydantic_validator__")


def _is_class_schema(schema: Any) -> bool:
    """A class whose annotations we read field by field (not a Struct or pydantic model)."""
    if not isinstance(schema, type) or not getattr(schema, "__annotations__", None):
        return False
    if dataclasses.is_dataclass(schema) or typing.is_typeddict(schema):
        return True
    if is_pydantic_model(schema) or hasattr(schema, "__struct_fields__"):
        return False
    return not issubclass(schema, tuple)  # NamedTuples are read by msgspec


_CONSTRAINTS = ("gt", "ge", "lt", "le", "multiple_of", "min_length", "max_length", "pattern")


def _constraints(marker: Any) -> dict[str, Any] | None:
    """msgspec.Meta arguments for an annotated-types or pydantic ``Field`` marker.

    None for markers that are not constraints (docs, strings); a constraint that cannot
    be enforced raises, so nothing is silently left unchecked.
    """
    module = type(marker).__module__ or ""
    if not module.startswith(("annotated_types", "pydantic")):
        return None
    found: dict[str, Any] = {}
    inner = getattr(marker, "metadata", None)  # pydantic FieldInfo
    if isinstance(inner, list):
        for item in inner:
            found.update(_constraints(item) or {})
        return found
    for name in _CONSTRAINTS:
        value = getattr(marker, name, None)
        if value is not None:
            found[name] = value
    if not found and module.startswith("annotated_types"):
        raise ConfigurationError(f"the constraint {marker!r} cannot be enforced by the validator")
    return found


class _PythonCompiler:
    def __init__(self, extra: Extra) -> None:
        self.extra: Extra = extra
        self.msgspec = _msgspec()
        self.memo: dict[int, Node] = {}

    def annotation(self, annotation: Any) -> Node:
        """The node of a type annotation.

        Unions and generic containers are taken apart here and only their leaves are
        read through ``msgspec.inspect.type_info``: msgspec 0.23 crashes (segfault)
        inspecting some unions (a constrained scalar beside a fixed-length tuple).
        """
        if _is_class_schema(annotation):
            return self.class_schema(annotation)
        origin = typing.get_origin(annotation)
        args = typing.get_args(annotation)
        if origin is Union or isinstance(annotation, types.UnionType):
            return UnionNode([self.annotation(arg) for arg in args])
        if origin is Annotated and typing.get_origin(args[0]) not in (None, Literal):
            return _with_lengths(self.annotation(args[0]), self.markers(args[1:]), annotation)
        if origin in _SEQUENCES or (origin is tuple and len(args) == 2 and args[1] is ...):
            unique = origin in (set, frozenset, abc.Set)
            item = self.annotation(args[0]) if args else AnyNode()
            return ListNode(item, unique=unique, kind="set" if unique else "list")
        if origin is tuple:
            return TupleNode([self.annotation(arg) for arg in args if arg != ()])
        if origin in _MAPPINGS:
            key, value = (args[0], args[1]) if len(args) == 2 else (str, Any)
            return DictNode(self.annotation(key), self.annotation(value))
        try:
            info = self.msgspec.inspect.type_info(self.rewrite(annotation))
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"unsupported schema type {annotation!r}: {exc}") from exc
        except NameError as exc:
            raise _unresolved(annotation, exc) from exc
        return self.info(info)

    def markers(self, markers: Sequence[Any]) -> dict[str, Any]:
        """The constraints of ``Annotated`` markers (msgspec.Meta, annotated-types, ...)."""
        merged: dict[str, Any] = {}
        for marker in markers:
            if isinstance(marker, self.msgspec.Meta):
                for name in _CONSTRAINTS:
                    value = getattr(marker, name, None)
                    if value is not None:
                        merged[name] = value
            else:
                merged.update(_constraints(marker) or {})
        return merged

    def rewrite(self, annotation: Any) -> Any:
        """Turn annotated-types / pydantic ``Field`` markers into ``msgspec.Meta``."""
        origin = typing.get_origin(annotation)
        if origin is None or origin is Literal:
            return annotation
        args = typing.get_args(annotation)
        if origin is Annotated:
            base, *markers = args
            kept: list[Any] = []
            merged: dict[str, Any] = {}
            for marker in markers:
                found = _constraints(marker)
                if found is None:
                    kept.append(marker)
                else:
                    merged.update(found)
            if merged:
                kept.append(self.msgspec.Meta(**merged))
            rebuilt = self.rewrite(base)
            return Annotated[(rebuilt, *kept)] if kept else rebuilt
        rewritten = tuple(self.rewrite(arg) for arg in args)
        if rewritten == args:
            return annotation
        if origin is Union or isinstance(annotation, types.UnionType):
            return Union[rewritten]  # noqa: UP007
        try:
            return origin[rewritten if len(rewritten) != 1 else rewritten[0]]
        except TypeError:
            return annotation

    def class_schema(self, cls: Any) -> Node:
        """A plain annotated class, a dataclass or a TypedDict, read field by field."""
        key = id(cls)
        if key in self.memo:
            return self.memo[key]
        lazy = self.memo[key] = LazyNode()
        try:
            hints = typing.get_type_hints(cls, include_extras=True)
        except Exception as exc:
            raise _unresolved(cls, exc) from exc
        defaults = _dataclass_defaults(cls) if dataclasses.is_dataclass(cls) else None
        required_keys = getattr(cls, "__required_keys__", None)
        fields = []
        for name, annotation in hints.items():
            if typing.get_origin(annotation) is typing.ClassVar or annotation is typing.ClassVar:
                continue
            if isinstance(annotation, dataclasses.InitVar):
                continue
            node = self.annotation(_strip_required(annotation))
            if defaults is not None:
                if name not in defaults:
                    continue  # init=False fields are not part of the data
                fields.append(_field(name, node, defaults[name]))
            elif required_keys is not None:
                marker = typing.get_origin(annotation)
                required = (
                    marker is not typing.NotRequired
                    if marker in (typing.Required, typing.NotRequired)
                    else name in required_keys
                )
                fields.append(Field(name, node, required=required))
            elif hasattr(cls, name):
                default = getattr(cls, name)
                if callable(default) and not isinstance(default, type):
                    raise ConfigurationError(
                        f"{cls.__name__}.{name}: a default must be a value, not {default!r}"
                    )
                fields.append(Field(name, node, required=False, default=default))
            else:
                fields.append(Field(name, node))
        node = ObjectNode(cls.__name__, fields, extra=self.extra)
        lazy.target = node
        self.memo[key] = node
        return node

    def info(self, info: Any) -> Node:
        inspect = self.msgspec.inspect
        if isinstance(info, inspect.Metadata):
            return self.info(info.type)
        simple = _SIMPLE.get(type(info).__name__)
        if simple is not None:
            built: Node = simple(info)
            return built
        if isinstance(info, inspect.EnumType):
            return EnumNode(info.cls)
        if isinstance(info, inspect.LiteralType):
            return LiteralNode(info.values)
        if isinstance(info, inspect.UnionType):
            return UnionNode([self.info(t) for t in info.types])
        if isinstance(info, inspect.SetType | inspect.FrozenSetType):
            item = self.info(info.item_type)
            return ListNode(
                item,
                min_length=info.min_length,
                max_length=info.max_length,
                unique=True,
                kind="set",
            )
        if isinstance(info, inspect.ListType | inspect.VarTupleType):
            return ListNode(
                self.info(info.item_type), min_length=info.min_length, max_length=info.max_length
            )
        if isinstance(info, inspect.TupleType):
            return TupleNode([self.info(t) for t in info.item_types])
        if isinstance(info, inspect.DictType):
            return DictNode(
                self.info(info.key_type),
                self.info(info.value_type),
                min_length=info.min_length,
                max_length=info.max_length,
            )
        if isinstance(info, inspect.DataclassType | inspect.TypedDictType):
            return self.class_schema(info.cls)
        if isinstance(info, inspect.StructType):
            return self.object(info)
        if isinstance(info, inspect.NamedTupleType):
            return TupleNode([self.info(f.type) for f in info.fields])
        if isinstance(info, inspect.CustomType) and _is_class_schema(info.cls):
            return self.class_schema(info.cls)
        raise ConfigurationError(f"unsupported schema type in {info!r}")

    def object(self, info: Any) -> Node:
        key = id(info.cls)
        if key in self.memo:
            return self.memo[key]
        lazy = self.memo[key] = LazyNode()
        nodefault = self.msgspec.NODEFAULT
        fields = []
        for f in info.fields:
            node = self.info(f.type)
            if f.required:
                fields.append(Field(f.encode_name, node))
            elif f.default_factory is not nodefault:
                fields.append(Field(f.encode_name, node, required=False, factory=f.default_factory))
            elif f.default is not nodefault:
                fields.append(Field(f.encode_name, node, required=False, default=f.default))
            else:
                fields.append(Field(f.encode_name, node, required=False))
        extra = self.extra
        if getattr(info, "forbid_unknown_fields", False):
            extra = "forbid"
        node = ObjectNode(info.cls.__name__, fields, extra=extra)
        lazy.target = node
        self.memo[key] = node
        return node


_SEQUENCES = (list, set, frozenset, abc.Sequence, abc.MutableSequence, abc.Set, abc.MutableSet)
_MAPPINGS = (dict, abc.Mapping, abc.MutableMapping)


def _with_lengths(node: Node, constraints: dict[str, Any], annotation: Any) -> Node:
    """Apply ``min_length``/``max_length`` to a container node."""
    other = set(constraints) - {"min_length", "max_length"}
    if other or not isinstance(node, ListNode | DictNode):
        raise ConfigurationError(
            f"{annotation!r}: only min_length/max_length constrain a container"
        )
    if "min_length" in constraints:
        node.min_length = constraints["min_length"]
    if "max_length" in constraints:
        node.max_length = constraints["max_length"]
    return node


def _dataclass_defaults(cls: Any) -> dict[str, Any]:
    """Field name -> (default, factory) for the init fields of a dataclass."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.init:
            out[f.name] = (f.default, f.default_factory)
    return out


def _field(name: str, node: Node, default: tuple[Any, Any]) -> Field:
    value, factory = default
    if factory is not dataclasses.MISSING:
        return Field(name, node, required=False, factory=factory)
    if value is not dataclasses.MISSING:
        return Field(name, node, required=False, default=value)
    return Field(name, node)


def _strip_required(annotation: Any) -> Any:
    """Drop TypedDict's ``Required``/``NotRequired`` wrappers (``__required_keys__`` has them)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Required or origin is typing.NotRequired:
        return typing.get_args(annotation)[0]
    if origin is Annotated:
        base, *markers = typing.get_args(annotation)
        return Annotated[(_strip_required(base), *markers)]
    return annotation


def _refuse(kind: str, hint: str) -> Node:
    raise ConfigurationError(f"{kind} fields cannot be event data (not JSON); {hint}")


def _unresolved(schema: Any, exc: Exception) -> ConfigurationError:
    return ConfigurationError(
        f"cannot resolve the annotations of {schema!r} ({exc}); a class referenced by name "
        "in an annotation must be importable from the schema's module"
    )


def _number(kind: Literal["int", "float"]) -> Any:
    def build(info: Any) -> Node:
        return NumberNode(
            kind, gt=info.gt, ge=info.ge, lt=info.lt, le=info.le, multiple_of=info.multiple_of
        )

    return build


_SIMPLE: dict[str, Any] = {
    "AnyType": lambda info: AnyNode(),
    "NoneType": lambda info: NoneNode(),
    "BoolType": lambda info: BoolNode(),
    "IntType": _number("int"),
    "FloatType": _number("float"),
    "StrType": lambda info: StrNode(
        min_length=info.min_length, max_length=info.max_length, pattern=info.pattern
    ),
    "BytesType": lambda info: BytesNode(),
    "ByteArrayType": lambda info: BytesNode(),
    "DateTimeType": lambda info: TemporalNode("datetime", info.tz),
    "TimeType": lambda info: TemporalNode("time", info.tz),
    "DateType": lambda info: TemporalNode("date"),
    "TimeDeltaType": lambda info: _refuse("timedelta", "store seconds as a number instead"),
    "UUIDType": lambda info: UUIDNode(),
    "DecimalType": lambda info: DecimalNode(),
}


def from_python_type(schema: Any, extra: Extra) -> Node:
    """Compile an annotated class, dataclass, TypedDict or msgspec Struct."""
    return _PythonCompiler(extra).annotation(schema)


# -- JSON Schema ----------------------------------------------------------------------

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


# -- the fast path --------------------------------------------------------------------


class NoFastPath(Exception):
    """The schema uses something msgspec cannot express; validate with the nodes only."""


def fast_type(node: Node) -> Any:
    """A msgspec type that accepts exactly what ``node`` accepts, or raise NoFastPath."""
    msgspec = _msgspec()
    try:
        built = _FastBuilder(msgspec).build(node)
    except (TypeError, ValueError) as exc:  # e.g. bounds msgspec cannot hold
        raise NoFastPath(str(exc)) from exc
    try:
        msgspec.convert(None, built, strict=True)
    except msgspec.ValidationError:
        pass
    except (TypeError, ValueError) as exc:  # msgspec refuses the type (e.g. some unions)
        raise NoFastPath(str(exc)) from exc
    return built


def _int_bounds(bounds: dict[str, Any]) -> dict[str, Any]:
    """``bounds`` limited to int64 where the schema gives none.

    msgspec bounds must fit in an int64, so the few values between 2**63 and the uint64
    maximum fail the fast path and are accepted by the complete walk instead.
    """
    out = dict(bounds)
    if bounds["ge"] is None and bounds["gt"] is None:
        out["ge"] = INT_MIN
    if bounds["le"] is None and bounds["lt"] is None:
        out["le"] = _INT64_MAX
    return out


_INT64_MAX = 2**63 - 1


class _FastBuilder:
    def __init__(self, msgspec: Any) -> None:
        self.msgspec = msgspec
        self.count = 0

    def meta(self, base: Any, **constraints: Any) -> Any:
        given = {k: v for k, v in constraints.items() if v is not None}
        return Annotated[base, self.msgspec.Meta(**given)] if given else base

    def build(self, node: Node) -> Any:
        if isinstance(node, AnyNode):
            return Any
        if isinstance(node, NoneNode):
            return None
        if isinstance(node, BoolNode):
            return bool
        if isinstance(node, NumberNode):
            bounds = {
                "gt": node.gt,
                "ge": node.ge,
                "lt": node.lt,
                "le": node.le,
                "multiple_of": node.multiple_of,
            }
            integer = self.meta(int, **_int_bounds(bounds))
            if node.kind == "int":
                return integer
            if node.kind == "float":
                return self.meta(float, **bounds)
            return Union[integer, self.meta(float, **bounds)]  # noqa: UP007
        if isinstance(node, StrNode):
            return self.meta(
                str, min_length=node.min_length, max_length=node.max_length, pattern=node.pattern
            )
        if isinstance(node, BytesNode):
            return bytes
        if isinstance(node, TemporalNode):
            base = {"datetime": dt.datetime, "date": dt.date, "time": dt.time}[node.kind]
            return self.meta(base, tz=node.tz)
        if isinstance(node, UUIDNode):
            return uuid.UUID
        if isinstance(node, DecimalNode):
            return decimal.Decimal
        if isinstance(node, EnumNode):
            return node.cls
        if isinstance(node, LiteralNode):
            if not all(v is None or type(v) in (str, int) for v in node.values):
                raise NoFastPath("literal values other than str, int and None")
            return Literal[node.values]
        if isinstance(node, ListNode):
            if node.unique:
                raise NoFastPath("unique items")
            item = self.build(node.item)
            return self.meta(list[item], min_length=node.min_length, max_length=node.max_length)  # type: ignore[valid-type]
        if isinstance(node, TupleNode):
            items = tuple(self.build(n) for n in node.items)
            return tuple[items] if items else tuple[()]  # type: ignore[valid-type]
        if isinstance(node, DictNode):
            key, value = self.build(node.key), self.build(node.value)
            return self.meta(
                dict[key, value],  # type: ignore[valid-type]
                min_length=node.min_length,
                max_length=node.max_length,
            )
        if isinstance(node, UnionNode):
            if any(isinstance(option, TupleNode) for option in node.options):
                # msgspec 0.23 crashes (segfault) converting to a union of a constrained
                # scalar and a fixed-length tuple; such unions are left to the walk
                raise NoFastPath("fixed-length tuples in a union")
            return Union[tuple(self.build(n) for n in node.options)]  # noqa: UP007
        if isinstance(node, ObjectNode):
            return self.object(node)
        raise NoFastPath(f"{type(node).__name__} (recursive schemas)")

    def object(self, node: ObjectNode) -> Any:
        if node.extra == "allow":
            raise NoFastPath("extra fields are kept")
        msgspec = self.msgspec
        fields: list[tuple[Any, ...]] = []
        rename: dict[str, str] = {}
        for index, field in enumerate(node.fields.values()):
            name = field.name
            attribute = name
            if not name.isidentifier() or keyword.iskeyword(name) or name.startswith("_"):
                attribute = f"field_{index}"
                rename[attribute] = name
            kind = self.build(field.node)
            if field.required:
                fields.append((attribute, kind))
            elif field.factory is not None:
                fields.append((attribute, kind, msgspec.field(default_factory=field.factory)))
            elif field.has_default:
                default = field.default
                if isinstance(default, dict | list):
                    frozen = copy.deepcopy(default)
                    fields.append(
                        (
                            attribute,
                            kind,
                            msgspec.field(default_factory=lambda d=frozen: copy.deepcopy(d)),
                        )
                    )
                else:
                    fields.append((attribute, kind, default))
            else:
                unset = Union[kind, msgspec.UnsetType]  # type: ignore[valid-type,name-defined]  # noqa: UP007
                fields.append((attribute, unset, msgspec.UNSET))
        self.count += 1
        return msgspec.defstruct(
            f"{node.name or 'Object'}Fast{self.count}",
            fields,
            kw_only=True,
            forbid_unknown_fields=node.extra == "forbid",
            rename=rename or None,
        )
