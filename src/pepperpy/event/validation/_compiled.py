"""One registered schema, compiled once: how data is checked against it.

:class:`Compiled` holds a schema's three ways to check data: msgspec's fast path (C,
for valid data), the node walk (every problem, named), and pydantic for pydantic
models (run on the event's JSON form), plus the freeze that makes the result event
data. It is kept apart from ``_validator.py``, which holds the registry around it
(event types, versions, upcasters): which schema applies is the validator's concern,
how one schema checks data is this module's.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import types
import typing
import uuid
from collections import abc
from collections.abc import Callable, Mapping
from enum import Enum
from typing import Any

from .._errors import ConfigurationError, SerializationError, ValidationError, ValidationProblem
from .._frozen import MAX_DEPTH
from .._json import dumps
from ._fast import NoFastPath, dec_hook, fast_type
from ._fast import msgspec_module as _msgspec
from ._freeze import (
    FRAMES_PER_LEVEL,
    compile_freezer,
    freeze_output,
    nested_deeper,
    schema_depth,
    stack_room,
)
from ._json_schema import from_json_schema
from ._node_values import base_scalar, plain_json
from ._nodes import (
    INVALID,
    AnyNode,
    Extra,
    Node,
    TupleNode,
    contains,
    describe,
    enable_coercion,
    json_issue,
    json_problem,
    lists,
)
from ._pydantic_expected import pydantic_expected
from ._pydantic_loc import PydanticLoc
from ._python_schema import from_python_type
from ._python_schema import is_pydantic_model as _is_pydantic
from ._text_check import text_look

__all__ = ["Compiled"]

_KEEP = (dt.datetime, dt.date, dt.time, uuid.UUID, decimal.Decimal, bytes)
_MISSED: Any = object()  # the fast path did not apply or the data failed it


class Compiled:
    """One registered schema, compiled once."""

    def __init__(
        self,
        event_type: str,
        version: int,
        schema: Any,
        extra: Extra | None,
        coerce: bool = False,
    ) -> None:
        if extra is None:  # the schema kind's own rule (see EventValidator)
            extra = "allow" if isinstance(schema, Mapping) else "forbid"
        self.event_type = event_type
        self.version = version
        self.schema = schema
        self.extra: Extra = extra
        self.strict = not coerce
        self.pydantic = _is_pydantic(schema)
        self.node: Node | None = None
        self.fast: Any = None
        self.hook: Callable[[type, Any], Any] | None = None
        self.freeze: Callable[[Any], Any] = freeze_output
        self.any_inside = self.tuple_inside = False
        self.look_for_text: Callable[[Any], Any] | None = None
        #: whether output must be measured against MAX_DEPTH (the schema does not bound it)
        self.unbounded = True
        if self.pydantic:
            _check_pydantic_bytes(schema)
            _check_pydantic_names(schema)
            self.adapter = schema.__pydantic_validator__
            #: nested models that refuse undeclared keys here (pydantic ignores them)
            self.nested = _NestedKeys(schema) if extra == "forbid" else None
            self.names = _pydantic_names(schema)
            #: keys of computed fields: written by the model, recomputed when read
            self.computed = _computed_names(schema)
            self.locs: PydanticLoc | None = None  # built at the first error
            return
        if isinstance(schema, Mapping):
            self.node = from_json_schema(schema, extra)
        elif isinstance(schema, type) or hasattr(schema, "__origin__"):
            self.node = from_python_type(schema, extra)
        else:
            raise TypeError(
                "a schema is an annotated class, dataclass, TypedDict, pydantic model, "
                f"msgspec Struct or JSON Schema dict, got {schema!r}"
            )
        if coerce:
            enable_coercion(self.node)
        self.freeze = compile_freezer(self.node)
        depth = schema_depth(self.node)
        self.unbounded = depth is None or depth > MAX_DEPTH
        msgspec = _msgspec()
        try:
            self.fast, hooked = fast_type(self.node)
        except NoFastPath:
            self.fast, hooked = None, False
        self.hook = dec_hook if hooked else None
        # msgspec passes Any-typed values through and to_builtins would turn a set into a
        # list: check such data is JSON first, so nothing is coerced silently
        self.any_inside = contains(self.node, AnyNode)
        # msgspec gives (and to_builtins keeps) tuples; data from the walk has lists
        self.tuple_inside = contains(self.node, TupleNode)
        # msgspec passes strings as they are, lone surrogates too: output that can hold
        # text given by the caller is encoded once, in C, to look for one (_text_check);
        # with Any inside, the input's walk before msgspec (_is_json) looks already
        self.look_for_text = None if self.any_inside else text_look(self.node, msgspec)
        self._convert = msgspec.convert
        self._to_builtins = msgspec.to_builtins
        self._fast_error = msgspec.ValidationError

    def check(self, data: Any) -> Any:
        """Return the validated, converted data or raise ValidationError with every problem."""
        try:
            return self._check(data)
        except RecursionError:  # deep data, from a deep caller maybe: try again with room
            pass
        return self._with_room(self._check, data)

    def _with_room(self, run: Callable[[Any], Any], data: Any) -> Any:
        """``run(data)`` once more, with stack for any data an Event holds.

        The first try ran out of Python's recursion limit: a recursive schema's walk takes
        several frames per level of the data, on top of the caller's. Data nested deeper
        than an Event holds is refused first, so only bounded data gets the extra room.
        """
        if nested_deeper(data, MAX_DEPTH):
            raise ValidationError([_too_deep_problem()], event_type=self.event_type)
        with stack_room(MAX_DEPTH + 2):
            try:
                return run(data)
            except RecursionError:
                pass
        problem = ValidationProblem(
            "",
            "a schema checked in fewer steps per level",
            describe(data),
            f"the schema takes more than {FRAMES_PER_LEVEL} nested checks per level of lists "
            "and objects: data this deep cannot be checked against it",
        )
        raise ValidationError([problem], event_type=self.event_type)

    def _check(self, data: Any) -> Any:
        converted = self._fast(data)
        if converted is not _MISSED:
            if self.look_for_text is not None:  # inline: this runs for every event
                try:
                    self.look_for_text(converted)
                except Exception:  # noqa: BLE001 - a lone surrogate msgspec passed
                    return self._bounded(self.explain(data))  # the walk names it
            plain = self._builtins(converted, data)
            return self._bounded(lists(plain) if self.tuple_inside else plain)
        if self.pydantic:
            return self._bounded(self._check_pydantic(data))
        return self._bounded(self.explain(data))

    def _builtins(self, converted: Any, data: Any) -> Any:
        """msgspec's output (generated Structs) for ``data`` as plain data.

        msgspec passes a ``str`` subclass (``markupsafe.Markup``) through as it is,
        which ``to_builtins`` cannot write: such values, rare, are written as their base
        type on a second try, so valid data costs nothing more. Anything else it cannot
        write is left to the walk, which names it (a ``ValidationError``, never a
        ``TypeError``).
        """
        try:
            return self._to_builtins(converted, builtin_types=_KEEP)
        except TypeError:
            pass
        try:
            return self._to_builtins(converted, builtin_types=_KEEP, enc_hook=_base_value)
        except TypeError:
            return self.explain(data)

    def _bounded(self, result: Any) -> Any:
        """``result``, unless it nests deeper than event data may (what Event refuses).

        Both ``check()`` and ``validate()`` pass here, so they agree on deep data.
        """
        if self.unbounded and nested_deeper(result, MAX_DEPTH):
            raise ValidationError([_too_deep_problem()], event_type=self.event_type)
        return result

    def frozen(self, data: Any) -> Any:
        """Like :meth:`check`, but the data comes back deep-frozen, ready for an Event."""
        try:
            return self._frozen(data)
        except RecursionError:  # as in check()
            pass
        return self._with_room(self._frozen, data)

    def _frozen(self, data: Any) -> Any:
        converted = self._fast(data)
        try:
            if converted is not _MISSED:  # C to_builtins + a schema-guided freeze beat a
                # Python walk over the Structs (measured)
                if self.look_for_text is not None:  # as in _check()
                    try:
                        self.look_for_text(converted)
                    except Exception:  # noqa: BLE001
                        return self.freeze(self._bounded(self.explain(data)))
                plain = self._builtins(converted, data)
                return self.freeze(self._bounded(plain))
            return self.freeze(self._check(data))
        except SerializationError as exc:  # NaN and the like, which msgspec lets through
            if self.node is not None and converted is not _MISSED:
                result = self.explain(data, fallback=str(exc))  # names the culprits
                try:
                    return self.freeze(result)
                except SerializationError:
                    pass
            # a pydantic model produced it (a default, a validator), or the walk missed it
            actual = describe(data)
            problem = ValidationProblem("", "JSON-representable data", actual, str(exc))
            raise ValidationError([problem], event_type=self.event_type) from None

    def _fast(self, data: Any) -> Any:
        """msgspec's output (generated Structs) for valid data, else ``_MISSED``."""
        if self.fast is None or (self.any_inside and not _is_json(data)):
            return _MISSED
        try:
            if self.hook is None:
                return self._convert(data, self.fast, strict=self.strict)
            return self._convert(data, self.fast, strict=self.strict, dec_hook=self.hook)
        except self._fast_error:
            return _MISSED
        except (TypeError, ValueError, OverflowError, RecursionError):
            return _MISSED

    def explain(self, data: Any, fallback: str | None = None) -> Any:
        """The complete (slower) walk: the converted data, or every problem found."""
        assert self.node is not None
        problems: list[ValidationProblem] = []
        result = self.node.check(data, "", problems)  # RecursionError: see check()
        if problems or result is INVALID:
            if not problems:
                message = fallback or "does not match the schema"
                problems.append(ValidationProblem("", self.node.expected, describe(data), message))
            raise ValidationError(problems, event_type=self.event_type)
        return result

    def _check_pydantic(self, data: Any) -> Any:
        problems: list[ValidationProblem] = []
        if not isinstance(data, Mapping):
            problems.append(
                ValidationProblem(
                    "", f"object {self.schema.__name__}", describe(data), "expected an object"
                )
            )
            raise ValidationError(problems, event_type=self.event_type)
        if self.computed and any(key in self.computed for key in data):
            # what the model wrote for them before: recomputed, never read
            data = {key: value for key, value in data.items() if key not in self.computed}
        if self.extra == "forbid" and self.schema.model_config.get("extra") is None:
            for key in data:
                if key not in self.names:
                    problems.append(
                        ValidationProblem(
                            str(key), "no such field", describe(data[key]), "unexpected field"
                        )
                    )
        issue = json_issue(data)  # orjson would write NaN as null: refuse it here
        if issue is not None:
            where, why = issue
            problems.append(
                ValidationProblem(where, "JSON-representable data", describe(data), why)
            )
            raise ValidationError(problems, event_type=self.event_type)
        if nested_deeper(data, _PYDANTIC_DEPTH):  # not the parser's message, nor orjson's
            raise ValidationError([_too_deep_problem(pydantic=True)], event_type=self.event_type)
        if self.nested is not None and self.nested.plan:  # whatever the top's extra is
            self.nested.check(self.schema, data, "", problems)
        try:
            raw = dumps(data)  # JSON mode: ISO datetimes accepted, "1" is not an int
        except SerializationError:  # a float subclass, which orjson refuses: as a float
            raw = None
        try:
            raw = dumps(plain_json(data)) if raw is None else raw
        except SerializationError as exc:
            problems.append(
                ValidationProblem("", "JSON-representable data", describe(data), str(exc))
            )
            raise ValidationError(problems, event_type=self.event_type) from None
        from pydantic import ValidationError as PydanticError

        try:
            # JSON mode in both: what pydantic checks is the event's JSON form, which is
            # also what a stored or delivered copy of the event holds (bytes as base64)
            model = self.adapter.validate_json(raw, strict=self.strict)
        except PydanticError as exc:
            if self.locs is None:
                self.locs = PydanticLoc(self.schema.__pydantic_core_schema__)
            for error in exc.errors(include_url=False):
                path = self.locs.path(error.get("loc", ()))
                # a missing field's input is the object it is missing from
                missing = error.get("type") == "missing"
                actual = "missing" if missing else describe(error.get("input"))
                problem = ValidationProblem(path, pydantic_expected(error), actual, error["msg"])
                if problem not in problems:  # two branches of a union failing alike
                    problems.append(problem)
        if problems:
            raise ValidationError(problems, event_type=self.event_type)
        from pydantic_core import PydanticSerializationError

        try:
            # by alias: the names the model reads, so the output validates again
            return _json_compatible(model.model_dump(by_alias=True))
        except PydanticSerializationError as exc:  # a type pydantic cannot write as JSON
            actual = describe(data)
            problem = ValidationProblem("", "JSON-representable data", actual, str(exc))
            raise ValidationError([problem], event_type=self.event_type) from None


#: most lists and objects pydantic's JSON parser (jiter) reads, fixed in pydantic-core
_PYDANTIC_DEPTH = 201


def _too_deep_problem(*, pydantic: bool = False) -> ValidationProblem:
    if pydantic and _PYDANTIC_DEPTH < MAX_DEPTH:
        why = (
            f"data nested too deeply for a pydantic model (at most {_PYDANTIC_DEPTH} levels "
            f"of lists and objects, which pydantic's JSON parser reads; an Event holds "
            f"{MAX_DEPTH})"
        )
    else:
        why = f"data nested too deeply (at most {MAX_DEPTH} levels of lists and objects)"
    return ValidationProblem("", "data of bounded depth", "too deeply nested", why)


def _json_compatible(value: Any) -> Any:
    """A pydantic ``model_dump()`` in the form the other schema kinds give their data.

    JSON's own types, with enum members as their values, sets and tuples as lists and
    keys as strings; datetimes, dates, times, UUIDs, decimals and bytes are kept (as
    for every schema kind); any other value (a ``timedelta``, a URL) as pydantic writes
    it in JSON.
    """
    cls = value.__class__
    if cls is str or cls is int or cls is float or cls is bool or value is None:
        return value
    if isinstance(value, Enum):
        return _json_compatible(value.value)
    if isinstance(value, _KEEP):
        return value
    if isinstance(value, Mapping):
        return {_json_key(key): _json_compatible(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_json_compatible(item) for item in value]
    from pydantic_core import to_jsonable_python

    return to_jsonable_python(value)


def _json_key(key: Any) -> str:
    """An object key as JSON writes it (``1`` as ``"1"``, an enum member as its value)."""
    if key.__class__ is str:
        return key
    from pydantic_core import to_jsonable_python

    plain = to_jsonable_python(key)
    return plain if isinstance(plain, str) else json.dumps(plain)


def _base_value(value: Any) -> Any:
    """``to_builtins``' hook: a ``str``, ``int`` or ``float`` subclass instance as its base
    type; any other value is refused (the fast path then gives way to the walk)."""
    plain = base_scalar(value)
    if plain is value:
        raise TypeError(f"value of type {type(value).__name__} is not JSON-serialisable")
    return plain


def _is_json(data: Any) -> bool:
    try:
        return json_problem(data) is None
    except RecursionError:
        return False


def _check_pydantic_bytes(model: Any) -> None:
    """Refuse a model whose ``bytes`` fields read JSON text as UTF-8 (pydantic's default).

    Event data writes bytes as base64 text, and the model is run on that JSON form: such
    a field would turn ``"aGk="`` into ``b"aGk="`` instead of ``b"hi"``. pydantic's JSON
    Schema shows every such field as ``format: binary`` (``base64url`` once the model
    reads base64).
    """
    try:
        schema = model.model_json_schema()
    except Exception:  # noqa: BLE001 - a model pydantic cannot describe: nothing to learn
        return
    if _mentions_binary(schema):
        raise ConfigurationError(
            f"pydantic model {model.__name__} has bytes fields that read JSON text as UTF-8, "
            "but event data holds bytes as base64 text: give the model (and any nested "
            "model with bytes) model_config = ConfigDict(val_json_bytes='base64', "
            "ser_json_bytes='base64')"
        )


def _mentions_binary(schema: Any) -> bool:
    if isinstance(schema, Mapping):
        if schema.get("format") == "binary" and schema.get("type") == "string":
            return True
        return any(_mentions_binary(item) for item in schema.values())
    if isinstance(schema, list):
        return any(_mentions_binary(item) for item in schema)
    return False


class _NestedKeys:
    """The undeclared-key check inside a pydantic model's nested models.

    pydantic ignores keys a nested model does not declare (its default ``extra``), so a
    key mistyped there was dropped with its value, while at the top it is refused and a
    nested dataclass refuses it. Each nested model that does not set ``extra`` itself
    refuses them here, reached through fields holding a model, an optional one, or a
    list, tuple, set or dict of one (a union of several models is left to pydantic).
    """

    def __init__(self, model: Any) -> None:
        #: model -> [(the keys its field is read under, the model the field holds, how:
        #: "one" or "items" or "values")]
        self.plan: dict[Any, list[tuple[frozenset[str], Any, str]]] = {}
        self.names: dict[Any, frozenset[str]] = {}
        self._read(model, top=True)
        if not any(self.plan.values()):
            self.plan = {}

    def _read(self, model: Any, top: bool = False) -> None:
        if model in self.plan:
            return
        self.plan[model] = steps = []
        self.names[model] = frozenset(_pydantic_names(model) | _computed_names(model))
        for name, field in model.model_fields.items():
            held = _held_model(field.annotation)
            if held is None:
                continue
            inner, how = held
            by_name, alias_keys = _read_keys(model, field)
            keys = frozenset(alias_keys | ({name} if by_name else set()))
            self._read(inner)
            if inner.model_config.get("extra") is None:
                steps.append((keys, inner, how))
            elif self.plan[inner]:  # deeper ones may still refuse
                steps.append((keys, inner, how))

    def check(self, model: Any, data: Mapping[str, Any], path: str, problems: list[Any]) -> None:
        for keys, inner, how in self.plan.get(model, ()):
            for key in keys:
                if key not in data:
                    continue
                value = data[key]
                where = f"{path}.{key}" if path else key
                if how == "one":
                    self._object(inner, value, where, problems)
                elif how == "values" and isinstance(value, Mapping):
                    for item_key, item in value.items():
                        self._object(inner, item, f"{where}[{item_key!r}]", problems)
                elif how == "items" and isinstance(value, list | tuple):
                    for index, item in enumerate(value):
                        self._object(inner, item, f"{where}[{index}]", problems)

    def _object(self, model: Any, value: Any, path: str, problems: list[Any]) -> None:
        if not isinstance(value, Mapping):
            return  # pydantic names what is wrong with it
        if model.model_config.get("extra") is None:
            names = self.names[model]
            for key in value:
                if key not in names:
                    problems.append(
                        ValidationProblem(
                            f"{path}.{key}",
                            "no such field",
                            describe(value[key]),
                            "unexpected field",
                        )
                    )
        self.check(model, value, path, problems)


def _held_model(annotation: Any) -> tuple[Any, str] | None:
    """The one pydantic model a field holds and how: ``M``/``M | None`` ("one"), a
    list, tuple or set of it ("items"), a dict of it ("values"); None otherwise."""
    origin = typing.get_origin(annotation)
    args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
    if _is_pydantic(annotation):
        return annotation, "one"
    if origin is typing.Annotated:
        return _held_model(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType) and len(args) == 1:
        return _held_model(args[0])
    if origin in _ITEMS and args and _is_pydantic(args[0]):
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            return None
        return args[0], "items"
    if origin in _VALUES and len(args) == 2 and _is_pydantic(args[1]):
        return args[1], "values"
    return None


#: the origins of fields holding items, and values under keys
_ITEMS = (list, tuple, set, frozenset, abc.Sequence, abc.MutableSequence, abc.Set, abc.MutableSet)
_VALUES = (dict, abc.Mapping, abc.MutableMapping)


def _pydantic_names(model: Any) -> set[str]:
    """The top-level keys ``model`` reads: each field's alias (its validation alias, the
    first key of an ``AliasPath``, every choice of ``AliasChoices``), or its name where
    the model reads names (no alias, or ``validate_by_name``/``populate_by_name``).

    A field's name is not one of them when it has an alias and the model reads aliases
    only: pydantic ignores such a key, and its value would be lost for the default.
    """
    names: set[str] = set()
    for name, field in model.model_fields.items():
        by_name, alias_keys = _read_keys(model, field)
        if by_name:
            names.add(name)
        names.update(alias_keys)
    return names


def _read_keys(model: Any, field: Any) -> tuple[bool, set[str]]:
    """Whether ``model`` reads ``field`` under its name, and the alias keys it reads."""
    config = model.model_config
    alias = field.validation_alias if field.validation_alias is not None else field.alias
    by_alias = config.get("validate_by_alias", True) is not False
    by_name = (
        alias is None
        or not by_alias
        or bool(config.get("validate_by_name") or config.get("populate_by_name"))
    )
    return by_name, (_alias_keys(alias) if by_alias and alias is not None else set())


def _alias_keys(alias: Any) -> set[str]:
    """The top-level keys an alias reads (a str, an ``AliasPath``, ``AliasChoices``)."""
    if isinstance(alias, str):
        return {alias}
    choices = getattr(alias, "choices", None)
    if choices is not None:
        return {key for choice in choices for key in _alias_keys(choice)}
    path = getattr(alias, "path", None)
    if path and isinstance(path[0], str):
        return {path[0]}
    return set()


def _computed_names(model: Any) -> frozenset[str]:
    """The keys under which ``model`` writes its computed fields."""
    computed = getattr(model, "model_computed_fields", {}) or {}
    return frozenset(info.alias or name for name, info in computed.items())


def _check_pydantic_names(model: Any, seen: set[int] | None = None) -> None:
    """Refuse a model (or a model nested in it) whose data would not validate again.

    Validated data is the model's dump (by alias): a field written under a key the
    model does not read (a ``serialization_alias`` other than what it reads, an alias
    only ``AliasPath`` reads, a required field with ``exclude=True``) comes back
    refused, or silently replaced by its default, when the event is validated again
    (upcasting, ``ValidateMiddleware``, a consumer's check).
    """
    seen = set() if seen is None else seen
    if id(model) in seen:
        return
    seen.add(id(model))
    for name, field in model.model_fields.items():
        where = f"pydantic model {model.__name__}, field {name!r}"
        if field.exclude is True:
            if field.is_required():
                raise ConfigurationError(
                    f"{where}: it is required but excluded from the model's data"
                    " (exclude=True): the event would hold no such field, and would not"
                    " validate again; give it a default, or do not exclude it"
                )
        else:
            written = field.serialization_alias or name
            by_name, alias_keys = _read_keys(model, field)
            if not (written in alias_keys or (by_name and written == name)):
                raise ConfigurationError(
                    f"{where}: the model writes it as {written!r} but reads it as"
                    f" {sorted(alias_keys) or [name]!r}: validated data would not validate"
                    " again (refused, or its value lost for the default); give the field"
                    " one alias (alias=...) for both, or set validate_by_name=True when"
                    " it is written under its name"
                )
        for nested in _nested_models(field.annotation):
            _check_pydantic_names(nested, seen)


def _nested_models(annotation: Any) -> list[Any]:
    """The pydantic models an annotation holds (in unions, containers, Annotated)."""
    if _is_pydantic(annotation):
        return [annotation]
    return [model for arg in typing.get_args(annotation) for model in _nested_models(arg)]
