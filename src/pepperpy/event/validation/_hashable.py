"""Which set items pydantic refuses as unhashable, told from a Python annotation.

A ``set[X]`` or ``frozenset[X]`` field holds what pydantic makes of each item, and a
Python set can only hold hashable values: a list, a dict or a non-frozen dataclass is
refused (``set_item_not_hashable``), a tuple or frozenset only when something in it is
unhashable. The validator keeps a set as a list of JSON values, where every item
would do, so each item is judged as the value pydantic would hold: a rule, built once
from the item's annotation, says why a converted item is unhashable (None: it is not).
``set[Any]`` items are JSON values: an array or object in it is refused.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections import abc
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Union

__all__ = ["Rule", "info_rule", "unhashable_rule"]

#: why a converted item is unhashable, or None
Rule = Callable[[Any], str | None]

_LISTS = (list, abc.Sequence, abc.MutableSequence)
_SETS = (set, abc.Set, abc.MutableSet)
_DICTS = (dict, abc.Mapping, abc.MutableMapping)


def _json_value(value: Any) -> str | None:
    """``set[Any]``: pydantic keeps a JSON array as a list, an object as a dict."""
    if isinstance(value, list | tuple):
        return "a list (an array)"
    if isinstance(value, Mapping):
        return "a dict (an object)"
    return None


def _always(reason: str) -> Rule:
    return lambda value: reason


def _shape(annotation: Any) -> str:
    """``"array"``, ``"object"``, ``"any"`` or ``"scalar"``: the JSON values it takes."""
    origin = typing.get_origin(annotation) or annotation
    if origin is Annotated:
        return _shape(typing.get_args(annotation)[0])
    if annotation is Any:
        return "any"
    if origin in (*_LISTS, *_SETS, tuple, frozenset):
        return "array"
    if origin in _DICTS or (
        isinstance(annotation, type) and hasattr(annotation, "__annotations__")
    ):
        return "object"
    return "scalar"


def _value_shape(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "array"
    return "object" if isinstance(value, Mapping) else "scalar"


def unhashable_rule(
    annotation: Any, seen: dict[Any, list[Rule | None]] | None = None
) -> Rule | None:
    """The rule for items of ``annotation``; None when pydantic's value is always hashable.

    ``seen`` holds the rule of each dataclass being read (a recursive one is judged by
    the rule it gets once read).
    """
    seen = {} if seen is None else seen
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is Annotated:
        return unhashable_rule(args[0], seen)
    if annotation is Any:
        return _json_value
    if origin is Union or isinstance(annotation, types.UnionType):
        return _union([(arg, unhashable_rule(arg, seen)) for arg in args])
    base = origin or annotation
    if base in _LISTS:
        return _always("a list")
    if base in _SETS:
        return _always("a set")
    if base in _DICTS:
        return _always("a dict (an object)")
    if base is tuple:
        return _tuple(args, seen)
    if typing.is_typeddict(annotation):
        return _always(f"a {annotation.__name__} (a TypedDict is a dict)")
    if dataclasses.is_dataclass(annotation) and isinstance(annotation, type):
        if getattr(annotation, "__hash__", None) is None:
            return _always(f"a {annotation.__name__} (a dataclass that is not frozen)")
        if annotation in seen:  # recursive: the rule it will have
            slot = seen[annotation]
            return lambda value: slot[0](value) if slot[0] is not None else None
        slot = seen[annotation] = [None]
        hints = typing.get_type_hints(annotation, include_extras=True)
        rules = {
            f.name: unhashable_rule(hints[f.name], seen)
            for f in dataclasses.fields(annotation)
            if f.init and f.name in hints
        }
        slot[0] = _fields({k: r for k, r in rules.items() if r is not None})
        return slot[0]
    return None


def _union(options: list[tuple[Any, Rule | None]]) -> Rule | None:
    """A union's value is the first option of its shape's: that option's rule."""
    if all(rule is None for _, rule in options):
        return None

    def rule(value: Any) -> str | None:
        shape = _value_shape(value)
        for option, option_rule in options:
            if _shape(option) in (shape, "any"):
                return option_rule(value) if option_rule is not None else None
        return None

    return rule


def _tuple(args: tuple[Any, ...], seen: dict[Any, list[Rule | None]]) -> Rule | None:
    """A tuple is hashable when all its items are."""
    if len(args) == 2 and args[1] is ...:
        item = unhashable_rule(args[0], seen)
        if item is None:
            return None
        return lambda value: next((w for w in map(item, value) if w is not None), None)
    rules = [unhashable_rule(arg, seen) for arg in args if arg != ()]
    if all(rule is None for rule in rules):
        return None

    def rule(value: Any) -> str | None:
        for item_rule, item in zip(rules, value, strict=False):
            why = item_rule(item) if item_rule is not None else None
            if why is not None:
                return f"a tuple holding {why}"
        return None

    return rule


def _fields(rules: dict[str, Rule]) -> Rule | None:
    """A frozen dataclass hashes its fields: hashable when they all are."""
    if not rules:
        return None

    def rule(value: Any) -> str | None:
        for name, field_rule in rules.items():
            if isinstance(value, Mapping) and name in value:
                why = field_rule(value[name])
                if why is not None:
                    return f"an object whose field {name!r} is {why}"
        return None

    return rule


def info_rule(info: Any, inspect: Any) -> Rule | None:
    """The rule for set items of a ``msgspec.inspect`` type (a msgspec Struct's field)."""
    if isinstance(info, inspect.Metadata):
        return info_rule(info.type, inspect)
    if isinstance(info, inspect.AnyType):
        return _json_value
    if isinstance(info, inspect.ListType):
        return _always("a list")
    if isinstance(info, inspect.SetType):
        return _always("a set")
    if isinstance(info, inspect.DictType | inspect.TypedDictType):
        return _always("a dict (an object)")
    if isinstance(info, inspect.DataclassType):
        return unhashable_rule(info.cls)
    return None
