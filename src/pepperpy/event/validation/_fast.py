"""The fast path: a node tree as generated msgspec types.

``fast_type`` turns the nodes into msgspec Structs and constrained types, so that valid
data is checked and converted in C by ``msgspec.convert(..., strict=True)``; the nodes
then only run to describe what is wrong.

A node msgspec cannot check exactly (an exact ``multipleOf``, the RFC forms of JSON
Schema's ``uuid``, ``date-time`` and ``time``, keywords combined by AND, a pydantic
pattern) becomes a *hooked* type: msgspec hands such a value to :func:`dec_hook`, which
checks and converts it with the node itself, so the rest of the data stays on the fast
path. msgspec then
checks that the result is an instance of the type: the value the hook has just returned
is one (``_HookedMeta``). Unions may hold no hooked type besides ``None`` (msgspec's
rule): such a schema has no fast path.
"""

from __future__ import annotations

import copy
import datetime as dt
import keyword
import uuid
from collections.abc import Sequence
from typing import Annotated, Any, ClassVar, Literal, Union

from .._deps import require
from ._json_nodes import AllNode, ArrayNode, TimeTextNode
from ._nodes import (
    INT_MIN,
    INVALID,
    AnyNode,
    BoolNode,
    BytesNode,
    DecimalNode,
    DictNode,
    EnumNode,
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

__all__ = ["NoFastPath", "dec_hook", "fast_type", "is_hooked", "msgspec_module"]


def msgspec_module() -> Any:
    """msgspec, or an error saying which extra to install."""
    return require("msgspec", extra="validation", feature="EventValidator")


class NoFastPath(Exception):
    """The schema uses something msgspec cannot express; validate with the nodes only."""


def fast_type(node: Node) -> tuple[Any, bool]:
    """A msgspec type that accepts exactly what ``node`` accepts, or raise NoFastPath.

    Also whether it holds hooked types: then convert with ``dec_hook=dec_hook`` (only
    then: the argument alone costs msgspec a tenth of a microsecond).
    """
    msgspec = msgspec_module()
    builder = _FastBuilder(msgspec)
    try:
        built = builder.build(node)
    except (TypeError, ValueError) as exc:  # e.g. bounds msgspec cannot hold
        raise NoFastPath(str(exc)) from exc
    if is_hooked(built):
        raise NoFastPath("the whole schema is checked by its nodes")
    try:
        msgspec.convert(None, built, strict=True, dec_hook=dec_hook)
    except msgspec.ValidationError:
        pass
    except (TypeError, ValueError) as exc:  # msgspec refuses the type (e.g. some unions)
        raise NoFastPath(str(exc)) from exc
    return built, builder.hooks > 0


_NOTHING = object()
#: what :func:`dec_hook` returned last, until msgspec has checked it. One slot for all
#: threads: another thread's value in it only makes msgspec refuse, and the walk decide.
_returned: list[Any] = [_NOTHING]


class _HookedMeta(type):
    """msgspec checks that what ``dec_hook`` returns is an instance of the hooked type.

    Exactly that value is one (the node's output: a str, a float, a UUID, a dict); any
    other value is not, so a conversion without ``dec_hook`` refuses what it cannot check.
    """

    def __instancecheck__(cls, instance: Any) -> bool:
        if _returned[0] is instance:
            _returned[0] = _NOTHING
            return True
        return False


class _Hooked(metaclass=_HookedMeta):
    """Base of the types whose values msgspec hands to :func:`dec_hook`."""

    hooked_node: ClassVar[Node]


def is_hooked(kind: Any) -> bool:
    """True for a type made by ``_FastBuilder.hooked``."""
    return isinstance(kind, type) and issubclass(kind, _Hooked)


def dec_hook(kind: type, value: Any) -> Any:
    """Check and convert ``value`` with the node behind the hooked type ``kind``.

    A refusal raises ``ValueError``, which msgspec reports as a ``ValidationError``: the
    fast path fails and the complete walk explains.
    """
    node = getattr(kind, "hooked_node", None)
    if node is None:  # msgspec turns this into its ValidationError: the walk explains
        raise TypeError(f"no decoder for {kind!r}")
    problems: list[Any] = []
    converted = node.check(value, "", problems)
    if problems or converted is INVALID:
        raise ValueError(problems[0].message if problems else "does not match the schema")
    _returned[0] = converted
    return converted


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
        self.hooks = 0

    def meta(self, base: Any, **constraints: Any) -> Any:
        given = {k: v for k, v in constraints.items() if v is not None}
        return Annotated[base, self.msgspec.Meta(**given)] if given else base

    def hooked(self, node: Node) -> Any:
        """A type msgspec hands to :func:`dec_hook`, which checks it with ``node``."""
        self.hooks += 1
        return type(f"Hooked{self.hooks}", (_Hooked,), {"hooked_node": node})

    def build(self, node: Node) -> Any:
        if isinstance(node, AnyNode):
            return Any
        if isinstance(node, NoneNode):
            return None
        if isinstance(node, BoolNode):
            return bool
        if isinstance(node, NumberNode):
            if node.multiple_of is not None and (
                node.kind != "int" or node.multiple_of.__class__ is not int
            ):  # msgspec decides in binary floating point; the node decides exactly
                return self.hooked(node)
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
            if node.matcher is not None:  # a pydantic pattern: pydantic-core runs it
                return self.hooked(node)
            return self.meta(
                str, min_length=node.min_length, max_length=node.max_length, pattern=node.source
            )
        if isinstance(node, BytesNode):
            return bytes
        if isinstance(node, TemporalNode):
            if node.rfc:  # RFC 3339 only: stricter than msgspec's reading
                return self.hooked(node)
            base = {"datetime": dt.datetime, "date": dt.date, "time": dt.time}[node.kind]
            return self.meta(base, tz=node.tz)
        if isinstance(node, UUIDNode):
            return self.hooked(node) if node.rfc else uuid.UUID
        if isinstance(node, TimeTextNode):
            return self.hooked(node)
        if isinstance(node, DecimalNode):
            # msgspec has no bounds for a Decimal, and takes "NaN" and "Infinity",
            # which event data (JSON) cannot hold: the node decides
            return self.hooked(node)
        if isinstance(node, EnumNode):
            return node.cls
        if isinstance(node, LiteralNode):
            return self.literal(node.values)
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
            if _order_matters(node.options):
                # the walk gives a value to the first option taking it, msgspec picks by
                # the value's type: 1.5 would come out a Decimal one way, a float the other
                raise NoFastPath("a union whose order msgspec does not follow")
            return Union[tuple(self.build(n) for n in node.options)]  # noqa: UP007
        if isinstance(node, ObjectNode):
            return self.object(node)
        if isinstance(node, AllNode):
            try:
                return self.literal(_all_literal(node))
            except NoFastPath:
                return self.hooked(node)
        if isinstance(node, ArrayNode):
            raise NoFastPath("prefixItems (arrays of varying length)")
        raise NoFastPath(f"{type(node).__name__} (recursive schemas)")

    def literal(self, values: tuple[Any, ...]) -> Any:
        """``Literal[values]``: in strict mode exactly these ints, strs and None.

        For JSON Schema ``enum`` (JSON equality) this accepts less than the walk (``1.0``
        for ``1``), never more: what the fast path refuses, the walk decides.
        """
        if not values or not all(v is None or type(v) in (str, int) for v in values):
            raise NoFastPath("literal values other than str, int and None")
        return Literal[values]

    def object(self, node: ObjectNode) -> Any:
        if node.extra == "allow":
            raise NoFastPath("extra fields are kept")
        if node.patterns:
            raise NoFastPath("patternProperties (keys chosen by pattern)")
        msgspec = self.msgspec
        fields: list[tuple[Any, ...]] = []
        rename: dict[str, str] = {}
        # a generated attribute must not be a field's own name: msgspec would keep one
        # field for both (and check one's value against the other's type)
        used = set(node.fields)
        for index, field in enumerate(node.fields.values()):
            name = field.name
            attribute = name
            if not name.isidentifier() or keyword.iskeyword(name) or name.startswith("_"):
                attribute = _unused(f"field_{index}", used)
                used.add(attribute)
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
        struct = msgspec.defstruct(
            f"{node.name or 'Object'}Fast{self.count}",
            fields,
            kw_only=True,
            forbid_unknown_fields=node.extra == "forbid",
            rename=rename or None,
        )
        if len(struct.__struct_fields__) != len(node.fields):  # never silently merge fields
            raise NoFastPath("field names msgspec cannot keep apart")
        return struct


def _unused(name: str, used: set[str]) -> str:
    """``name``, or ``name_2``, ``name_3``, ... : the first that is not in ``used``."""
    candidate, number = name, 1
    while candidate in used:
        number += 1
        candidate = f"{name}_{number}"
    return candidate


def _all_literal(node: AllNode) -> tuple[Any, ...]:
    """The values of an ``enum``/``const`` part that every other part accepts unchanged.

    A value equal to one of these is accepted by the AND of all parts, and each part
    returns it as given; so ``Literal[...]`` of them is exact. Without such a part, or
    with a value a part converts (a ``format``), raise NoFastPath: the node is hooked.
    """
    parts = (node.main, *node.checks)
    literal = next((p for p in parts if isinstance(p, LiteralNode)), None)
    if literal is None:
        raise NoFastPath("keywords combined with $ref or anyOf")
    kept = []
    for value in literal.values:
        for part in parts:
            if part is literal:
                continue
            problems: list[Any] = []
            result = part.check(value, "", problems)
            if problems or result is INVALID:
                break  # an invalid value: rightly left out
            if type(result) is not type(value) or result != value:
                raise NoFastPath("an enum value a format converts")
        else:
            kept.append(value)
    return tuple(kept)


def _order_matters(options: Sequence[Node]) -> bool:
    """Whether the walk, which gives a value to the first of ``options`` taking it, and
    msgspec, which picks an option by the value's type, could convert it differently.

    A decimal takes ints and floats before a later int or float option would; any
    option before an ``Any`` takes (and may convert) what msgspec leaves as it is.
    """
    seen_decimal = False
    for index, option in enumerate(options):
        if isinstance(option, AnyNode) and index:
            return True
        if isinstance(option, DecimalNode):
            seen_decimal = True
        elif seen_decimal and isinstance(option, NumberNode):
            return True
    return False
