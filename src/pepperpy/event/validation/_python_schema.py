"""Compiling Python schemas into validation nodes.

Plain annotated classes, dataclasses, TypedDicts and msgspec Structs are read through
``msgspec.inspect.type_info``, which already understands ``Optional``, unions,
``Literal``, enums, datetimes and ``Annotated[..., msgspec.Meta(...)]`` constraints.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections import abc
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Annotated, Any, Literal, Union

from .._errors import ConfigurationError
from ._fast import msgspec_module
from ._hashable import info_rule, unhashable_rule
from ._markers import CONSTRAINTS as _CONSTRAINTS
from ._markers import PYDANTIC_PATTERN, field_info_default
from ._markers import constraints as _constraints
from ._nodes import (
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
    json_problem,
)

__all__ = ["from_python_type", "is_pydantic_model"]


def is_pydantic_model(schema: Any) -> bool:
    """True for a pydantic (v2) model class (a pydantic dataclass is read as a dataclass)."""
    return (
        isinstance(schema, type)
        and hasattr(schema, "__pydantic_validator__")
        and not dataclasses.is_dataclass(schema)
    )


#: the kinds of pydantic decorator that check (or change) what a class accepts
_PYDANTIC_VALIDATORS = ("validators", "field_validators", "root_validators", "model_validators")


#: pydantic config keys that change what a class accepts or gives, which the validator
#: does not apply: set (to anything but their default), they are refused
_CONFIG_NOT_APPLIED = (
    "str_to_lower",
    "str_to_upper",
    "str_strip_whitespace",
    "str_min_length",
    "str_max_length",
    "coerce_numbers_to_str",
    "alias_generator",
    "validate_default",
)


def _refuse_config(cls: Any, config: Mapping[str, Any]) -> None:
    """Refuse a class whose pydantic config (``__pydantic_config__``, a pydantic
    dataclass's ``config=``) sets what the validator does not apply: its constraints
    would be skipped silently (``str_max_length=3`` accepting any length)."""
    found = [
        f"{key}={config[key]!r}"
        for key in _CONFIG_NOT_APPLIED
        if config.get(key) not in (None, False, 0)
    ]
    if found:
        raise ConfigurationError(
            f"{cls.__qualname__}'s pydantic config sets {', '.join(found)}, which only"
            " pydantic applies (the validator reads the class's fields): what it refuses"
            " or changes would go unchecked. Put the constraint on the field"
            " (Annotated[str, pydantic.Field(max_length=3)]), or register a pydantic model"
        )


def _refuse_code_not_run(cls: Any, kind: str) -> None:
    """Refuse a dataclass or Struct whose own code checks its data: it is never run.

    The validator reads the class's fields and checks data against them; it never makes
    an instance, so neither ``__post_init__`` (which dataclasses, msgspec and pydantic
    run when they make one, and where checks across fields usually live) nor a pydantic
    dataclass's validators would run, and what they refuse would be accepted silently.
    """
    name = cls.__qualname__
    if getattr(cls, "__post_init__", None) is not None:
        raise ConfigurationError(
            f"{kind} {name} defines __post_init__, which the validator never runs (it checks"
            f" the data against the fields and makes no {name}): what it checks would be"
            " accepted silently. Register a pydantic model doing those checks (a"
            " model_validator), or a schema class without __post_init__"
        )
    decorators = getattr(cls, "__pydantic_decorators__", None)
    found = [
        function
        for attribute in _PYDANTIC_VALIDATORS
        for function in getattr(decorators, attribute, {}) or {}
    ]
    if found:
        raise ConfigurationError(
            f"pydantic dataclass {name} has validators ({', '.join(sorted(found))}), which"
            " run only when pydantic makes one; the validator reads its fields and makes"
            " none, so what they refuse would be accepted silently. Register a pydantic"
            " model (pydantic.BaseModel) with those validators instead"
        )


def _is_class_schema(schema: Any) -> bool:
    """A class whose annotations we read field by field (not a Struct or pydantic model)."""
    if not isinstance(schema, type) or not getattr(schema, "__annotations__", None):
        return False
    if dataclasses.is_dataclass(schema) or typing.is_typeddict(schema):
        return True
    if is_pydantic_model(schema) or hasattr(schema, "__struct_fields__"):
        return False
    return not issubclass(schema, tuple)  # NamedTuples are read by msgspec


class _PythonCompiler:
    def __init__(self, extra: Extra) -> None:
        self.extra: Extra = extra
        self.msgspec = msgspec_module()
        self.memo: dict[int, Node] = {}
        #: the pydantic ``regex_engine`` of the class being read (None: pydantic's default)
        self.regex_engine: str | None = None

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
        if origin is Annotated and (inner := _optional_inner(args[0])) is not None:
            # Annotated[X | None, marker] constrains the X, as pydantic reads it
            return UnionNode([self.annotation(Annotated[(inner, *args[1:])]), NoneNode()])
        if origin is Annotated and args[0] is Decimal:  # msgspec.Meta takes no bounds there
            return _decimal(self.markers(args[1:]), annotation)
        if origin is Annotated and typing.get_origin(args[0]) not in (None, Literal):
            return _with_lengths(self.annotation(args[0]), self.markers(args[1:]), annotation)
        if origin in _SEQUENCES or (origin is tuple and len(args) == 2 and args[1] is ...):
            unique = origin in (set, frozenset, abc.Set, abc.MutableSet)
            item = self.annotation(args[0]) if args else AnyNode()
            node = ListNode(
                item, unique="values" if unique else None, kind="set" if unique else "list"
            )
            if unique:  # pydantic refuses an item a Python set cannot hold
                node.unhashable = unhashable_rule(args[0] if args else Any)
            return node
        if origin is tuple:
            return TupleNode([self.annotation(arg) for arg in args if arg != ()])
        if origin in _MAPPINGS:
            key, value = (args[0], args[1]) if len(args) == 2 else (str, Any)
            return DictNode(_text_key(self.annotation(key), annotation), self.annotation(value))
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
            pattern = merged.pop(PYDANTIC_PATTERN, None)
            if pattern is not None:  # carried to ``info`` beside msgspec's constraints
                kept.append(self.msgspec.Meta(extra={PYDANTIC_PATTERN: pattern}))
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
        """A plain annotated class, a dataclass or a TypedDict, read field by field.

        Its pydantic config's ``regex_engine`` (``__pydantic_config__``, which pydantic
        reads there) decides how its pydantic patterns run; a class without a config
        keeps the enclosing one's, as in pydantic.
        """
        config = getattr(cls, "__pydantic_config__", None)
        if id(cls) in self.memo or not isinstance(config, Mapping):
            return self._class_schema(cls)
        _refuse_config(cls, config)
        outer = self.regex_engine
        self.regex_engine = config.get("regex_engine")
        try:
            return self._class_schema(cls)
        finally:
            self.regex_engine = outer

    def _class_schema(self, cls: Any) -> Node:
        key = id(cls)
        if key in self.memo:
            return self.memo[key]
        lazy = self.memo[key] = LazyNode()
        if dataclasses.is_dataclass(cls):
            _refuse_code_not_run(cls, "dataclass")
        try:
            hints = typing.get_type_hints(cls, include_extras=True)
        except Exception as exc:
            raise _unresolved(cls, exc) from exc
        defaults = _dataclass_defaults(cls) if dataclasses.is_dataclass(cls) else None
        required_keys = getattr(cls, "__required_keys__", None)
        fields = []
        for name, hint in hints.items():
            annotation = hint
            if typing.get_origin(annotation) is typing.ClassVar or annotation is typing.ClassVar:
                continue
            if isinstance(annotation, dataclasses.InitVar):
                continue
            annotation = _strip_required(annotation)
            default = defaults.get(name) if defaults is not None else getattr(cls, name, None)
            if _is_field_info(default[0] if isinstance(default, tuple) else default):
                # x: int = pydantic.Field(gt=0): its constraints, and its default if any
                info = default[0] if isinstance(default, tuple) else default
                pair, marker = field_info_default(info)
                annotation = Annotated[annotation, marker]
                if defaults is not None:
                    defaults[name] = pair
                else:
                    fields.append(_field(name, self.field_node(cls, name, annotation), pair))
                    continue
            node = self.field_node(cls, name, annotation)
            if defaults is not None:
                if name not in defaults:
                    continue  # init=False fields are not part of the data
                fields.append(_field(name, node, defaults[name]))
            elif required_keys is not None:
                marker = typing.get_origin(hint)
                while _is_read_only(marker):  # ReadOnly[NotRequired[X]]: the inner says
                    hint = typing.get_args(hint)[0]
                    marker = typing.get_origin(hint)
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
        _check_defaults(cls, fields)
        extra = self.extra
        config = getattr(cls, "__pydantic_config__", None)
        if isinstance(config, Mapping) and config.get("extra") in ("forbid", "ignore", "allow"):
            extra = config["extra"]  # the class says what it wants, as a Struct may
        node = ObjectNode(cls.__name__, fields, extra=extra)
        lazy.target = node
        self.memo[key] = node
        return node

    def field_node(
        self, cls: Any, name: str, annotation: Any, read: Callable[[Any], Node] | None = None
    ) -> Node:
        """The node of field ``name`` of ``cls`` (its annotation, or what ``read`` makes of
        its msgspec type info); a type it cannot take is refused naming the field
        (``Order.callback: ...``; nested: ``Order.lines: Line.sku: ...``)."""
        try:
            return (read or self.annotation)(annotation)
        except ConfigurationError as exc:
            where = f"{getattr(cls, '__qualname__', cls)}.{name}"
            if str(exc).startswith(f"{where}:"):
                raise
            raise ConfigurationError(f"{where}: {exc}") from exc

    def info(self, info: Any) -> Node:
        inspect = self.msgspec.inspect
        if isinstance(info, inspect.Metadata):
            node = self.info(info.type)
            pattern = (info.extra or {}).get(PYDANTIC_PATTERN)
            if pattern is None:
                return node
            if not isinstance(node, StrNode):
                raise ConfigurationError(
                    f"a pydantic pattern constrains a str, not {node.expected} "
                    f"(pattern {pattern!r})"
                )
            return StrNode(
                min_length=node.min_length,
                max_length=node.max_length,
                pattern=node.pattern,
                pydantic_pattern=pattern,
                regex_engine=self.regex_engine,
            )
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
            node = ListNode(
                item,
                min_length=info.min_length,
                max_length=info.max_length,
                unique="values",
                kind="set",
            )
            node.unhashable = info_rule(info.item_type, inspect)
            return node
        if isinstance(info, inspect.ListType | inspect.VarTupleType):
            return ListNode(
                self.info(info.item_type), min_length=info.min_length, max_length=info.max_length
            )
        if isinstance(info, inspect.TupleType):
            return TupleNode([self.info(t) for t in info.item_types])
        if isinstance(info, inspect.DictType):
            return DictNode(
                _text_key(self.info(info.key_type), info),
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
        if isinstance(info, inspect.CustomType) and is_pydantic_model(info.cls):
            raise ConfigurationError(
                f"pydantic model {info.cls.__qualname__} inside a dataclass, TypedDict, plain"
                " class or Struct: only pydantic runs a model (its validators, aliases,"
                " config), so it cannot be checked field by field here; register a pydantic"
                " model at the top (a dataclass may be nested in it), or make this one a"
                " dataclass"
            )
        shown = getattr(getattr(info, "cls", None), "__qualname__", None) or repr(info)
        raise ConfigurationError(
            f"unsupported type {shown}: event data is JSON, so a field holds JSON values or "
            "what is read from them (an enum, a datetime, UUID, Decimal, bytes, or a class "
            "read as an object: a dataclass, TypedDict, plain annotated class or Struct)"
        )

    def object(self, info: Any) -> Node:
        key = id(info.cls)
        if key in self.memo:
            return self.memo[key]
        lazy = self.memo[key] = LazyNode()
        _refuse_code_not_run(info.cls, "msgspec Struct")
        if getattr(info, "array_like", False):
            raise ConfigurationError(
                f"msgspec Struct {info.cls.__qualname__} is array_like (msgspec writes it as"
                " an array of its field values); event data keeps objects as objects, and the"
                " validator reads a Struct as one: register a Struct without array_like=True"
            )
        nodefault = self.msgspec.NODEFAULT
        hints = _struct_hints(info.cls)
        fields = []
        tag_field = getattr(info, "tag_field", None)
        if tag_field is not None:
            # a tagged Struct's JSON form carries its tag (msgspec writes it, and a union
            # of tagged Structs needs it): taken when it is the Struct's, filled in when
            # absent, so what validate() returns decodes back into the Struct
            tag = info.tag
            fields.append(Field(tag_field, LiteralNode((tag,)), required=False, default=tag))
        for f in info.fields:
            hint = hints.get(f.name)
            if hint is not None and _has_markers(hint):
                # msgspec reads only msgspec.Meta: an annotated-types or pydantic marker
                # (Gt(0), Field(pattern=...)) was dropped, the field accepted unchecked
                node = self.field_node(info.cls, f.name, hint)
            else:
                node = self.field_node(info.cls, f.name, f.type, read=self.info)
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
        _check_defaults(info.cls, fields)
        node = ObjectNode(info.cls.__name__, fields, extra=extra)
        lazy.target = node
        self.memo[key] = node
        return node


_SEQUENCES = (list, set, frozenset, abc.Sequence, abc.MutableSequence, abc.Set, abc.MutableSet)
_MAPPINGS = (dict, abc.Mapping, abc.MutableMapping)


def _decimal(constraints: dict[str, Any], annotation: Any) -> Node:
    """A Decimal with bounds (``gt``, ``ge``, ``lt``, ``le``, ``multiple_of``)."""
    other = set(constraints) - {"gt", "ge", "lt", "le", "multiple_of"}
    if other:
        raise ConfigurationError(f"{annotation!r}: {sorted(other)} cannot constrain a Decimal")
    for name, bound in constraints.items():
        # as msgspec.Meta refuses such bounds of an int or float (a NaN bound or a zero
        # step raised decimal.InvalidOperation on every value checked)
        number = bound.__class__ is not bool and isinstance(bound, int | float | Decimal)
        if not number or not Decimal(bound).is_finite():
            raise ConfigurationError(
                f"{annotation!r}: {name} of a Decimal must be a finite number, got {bound!r}"
            )
        if name == "multiple_of" and not bound > 0:
            raise ConfigurationError(f"{annotation!r}: multiple_of must be > 0, got {bound!r}")
    return DecimalNode(**constraints)


def _text_key(key: Node, annotation: Any) -> Node:
    """The key node of a dict: one whose keys are str, as event data's (JSON) are.

    An ``Any`` key is any str. A key converted into something else (an int, a UUID, a
    date) would give data no event can hold: ``validate()`` returned an event that
    failed only when stored or published, so such a dict is refused here.
    """
    if isinstance(key, AnyNode):
        return StrNode()
    if not _is_text(key):
        raise ConfigurationError(
            f"{annotation!r}: the keys of event data's objects are str (JSON), so a dict's "
            f"keys must be str (or a Literal or Enum of strs), not {key.expected}"
        )
    return key


def _is_text(node: Node) -> bool:
    if isinstance(node, StrNode):
        return True
    if isinstance(node, LiteralNode):
        return all(isinstance(value, str) for value in node.values)
    if isinstance(node, EnumNode):
        return all(isinstance(member.value, str) for member in node.cls)
    if isinstance(node, UnionNode):
        return all(_is_text(option) for option in node.options)
    return False


def _with_lengths(node: Node, constraints: dict[str, Any], annotation: Any) -> Node:
    """Apply ``min_length``/``max_length`` to a container node (markers that constrain
    nothing, a description, leave any node as it is)."""
    if not constraints:
        return node
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


def _check_defaults(cls: Any, fields: Sequence[Field]) -> None:
    """Refuse a default that is no event data (JSON): filled in for an absent field, it
    would crash the check (an ``object()``) or give an event that fails when stored or
    published (a lone surrogate, an int beyond 64 bits, a non-str key). A factory is
    called once to see what it gives; one that raises here is left to the check."""
    for field in fields:
        if not field.has_default:
            continue
        why: str | None
        try:
            value = field.fallback()
        except Exception as exc:
            if field.factory is not None and _raises(field.factory):
                continue
            why = f"{type(exc).__name__}: {exc}"
        else:
            why = json_problem(value)
        if why is not None:
            raise ConfigurationError(
                f"{cls.__name__}.{field.name}: its default is not event data (JSON): {why}"
            )


def _raises(factory: Any) -> bool:
    try:
        factory()
    except Exception:
        return True
    return False


def _optional_inner(annotation: Any) -> Any:
    """The X of ``Optional[X]`` (``X | None``, a union of X and None only), else None."""
    if typing.get_origin(annotation) is not Union and not isinstance(annotation, types.UnionType):
        return None
    options = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
    if len(options) != 1 or len(typing.get_args(annotation)) != 2:
        return None
    return options[0]


def _struct_hints(cls: Any) -> dict[str, Any]:
    """A msgspec Struct's annotations, markers kept (msgspec has resolved them)."""
    try:
        return typing.get_type_hints(cls, include_extras=True)
    except Exception:  # msgspec read them: its reading stands
        return {}


def _has_markers(annotation: Any) -> bool:
    """Whether ``annotation`` holds an annotated-types or pydantic constraint marker."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is Annotated:
        if any(_constraints(marker) is not None for marker in args[1:]):
            return True
        args = args[:1]
    return origin is not Literal and any(_has_markers(arg) for arg in args)


def _is_field_info(value: Any) -> bool:
    """True for a ``pydantic.Field(...)`` (given as a field's value)."""
    cls = type(value)
    return cls.__name__ == "FieldInfo" and (cls.__module__ or "").startswith("pydantic")


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
    """Drop TypedDict's ``Required``/``NotRequired`` wrappers (``__required_keys__`` has
    them) and ``ReadOnly`` (PEP 705: about the TypedDict's users, not its data)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Required or origin is typing.NotRequired or _is_read_only(origin):
        return _strip_required(typing.get_args(annotation)[0])
    if origin is Annotated:
        base, *markers = typing.get_args(annotation)
        return Annotated[(_strip_required(base), *markers)]
    return annotation


def _is_read_only(origin: Any) -> bool:
    """Whether ``origin`` is ``ReadOnly`` (typing's, 3.13, or typing_extensions')."""
    return origin is not None and getattr(origin, "_name", None) == "ReadOnly"


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
