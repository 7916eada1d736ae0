"""Where a pydantic model's error is, named as the other schema kinds name it.

pydantic-core adds steps to an error's ``loc`` that are no keys of the data: below a
union of several choices, the failing branch's label (its validator's name, such as
``set[int]``, ``Cat`` or ``function-after[f(), int]``, or the label the union gives the
choice); below a tagged union, the tag that picked the branch; and after a dict key the
keys' schema refused, ``'[key]'``. Which steps those are is read from the model's core
schema, walked alongside the ``loc``: a step is dropped only where the schema there is a
union (or a dict's keys), never because of its text, so a field or key that happens to
be called ``int`` or ``[key]`` stays. Where the walk cannot tell (a schema kind it does
not know, or two readings of the same ``loc`` that differ) the ``loc`` is kept whole,
as pydantic gives it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ._node_base import join_path

__all__ = ["PydanticLoc"]

_Loc = tuple[str | int, ...]

#: schema kinds holding one schema (``schema``) whose errors keep their own ``loc``
_WRAPPERS = frozenset(
    {
        "definitions",
        "model",
        "dataclass",
        "nullable",
        "default",
        "with-default",
        "function-before",
        "function-after",
        "function-wrap",
        "json",
    }
)

#: schema kinds that hold no other schema: no error below them has a longer ``loc``
_LEAVES = frozenset(
    {
        "any",
        "none",
        "bool",
        "int",
        "float",
        "decimal",
        "complex",
        "str",
        "bytes",
        "date",
        "time",
        "datetime",
        "timedelta",
        "literal",
        "enum",
        "uuid",
        "url",
        "multi-host-url",
        "is-instance",
        "is-subclass",
        "callable",
    }
)


class PydanticLoc:
    """Turns the ``loc`` of a model's errors into paths (built once per model)."""

    def __init__(self, core_schema: Mapping[str, Any]) -> None:
        self.core_schema = core_schema
        self.refs: dict[str, Mapping[str, Any]] = {}
        _collect_refs(core_schema, self.refs, set())

    def path(self, loc: Sequence[Any]) -> str:
        """The path of the error at ``loc``, its branch steps dropped (see module doc)."""
        given: _Loc = tuple(part for part in loc if isinstance(part, str | int))
        try:
            readings = _Walk(self.refs, given).walk(self.core_schema, 0)
        except (RecursionError, KeyError, TypeError, AttributeError):
            readings = frozenset()
        steps = next(iter(readings)) if len(readings) == 1 else given
        path = ""
        for step in steps:
            path = join_path(path, step)
        return path


def _collect_refs(schema: Any, refs: dict[str, Mapping[str, Any]], seen: set[int]) -> None:
    """Every schema with a ``ref`` in ``schema`` (``definition-ref`` names them)."""
    if id(schema) in seen:
        return
    seen.add(id(schema))
    if isinstance(schema, Mapping):
        ref = schema.get("ref")
        if isinstance(ref, str) and "type" in schema:
            refs.setdefault(ref, schema)
        for key, value in schema.items():
            if key not in ("metadata", "cls", "function", "serialization"):
                _collect_refs(value, refs, seen)
    elif isinstance(schema, list | tuple):
        for item in schema:
            _collect_refs(item, refs, seen)


class _Walk:
    """The readings of one ``loc``: for each way the schema explains it, the steps kept."""

    def __init__(self, refs: Mapping[str, Mapping[str, Any]], loc: _Loc) -> None:
        self.refs = refs
        self.loc = loc
        self.memo: dict[tuple[int, int], frozenset[_Loc]] = {}

    def walk(self, schema: Any, at: int) -> frozenset[_Loc]:
        """How ``loc[at:]`` reads below ``schema``: empty if it cannot be there."""
        if at == len(self.loc):
            return frozenset({()})  # an error may be raised at any schema
        key = (id(schema), at)
        if key in self.memo:
            return self.memo[key]
        self.memo[key] = frozenset()  # a schema reached again without a step: no reading
        found = self._walk(schema, at)
        self.memo[key] = found
        return found

    def _below(self, prefix: _Loc, schema: Any, at: int) -> frozenset[_Loc]:
        return frozenset(prefix + reading for reading in self.walk(schema, at))

    def _walk(self, schema: Any, at: int) -> frozenset[_Loc]:
        rest = self.loc[at:]
        step = rest[0]
        kind = schema.get("type")
        if kind in _WRAPPERS and "schema" in schema:
            return self.walk(schema["schema"], at)
        if kind == "definition-ref":
            target = self.refs.get(schema["schema_ref"])
            return frozenset({rest}) if target is None else self.walk(target, at)
        if kind == "json-or-python":  # the model reads the event's JSON form
            return self.walk(schema["json_schema"], at)
        if kind == "lax-or-strict":
            return self.walk(schema["lax_schema"], at) | self.walk(schema["strict_schema"], at)
        if kind == "chain":
            return frozenset().union(*(self.walk(item, at) for item in schema["steps"]))
        if kind in ("model-fields", "typed-dict"):
            return self._fields(schema["fields"].items(), schema.get("extras_schema"), at)
        if kind == "dataclass-args":
            fields = [(field["name"], field) for field in schema["fields"]]
            return self._fields(fields, None, at)
        if kind in ("list", "set", "frozenset", "generator"):
            if not isinstance(step, int):
                return frozenset()
            return self._below((step,), schema.get("items_schema", {"type": "any"}), at + 1)
        if kind == "tuple":
            return self._tuple(schema, at)
        if kind == "dict":
            return self._dict(schema, at)
        if kind == "union":
            return self._union(schema, at)
        if kind == "tagged-union":
            return self._tagged_union(schema, at)
        if kind in _LEAVES:
            return frozenset()  # nothing below it: this reading is not the one
        return frozenset({rest})  # a kind not known here: keep the rest as given

    def _fields(self, fields: Any, extras: Any, at: int) -> frozenset[_Loc]:
        found: set[_Loc] = set()
        matched = False
        for name, field in fields:
            for names in _field_locs(name, field.get("validation_alias")):
                if self.loc[at : at + len(names)] == names:
                    matched = True
                    found |= self._below(names, field["schema"], at + len(names))
        if matched:
            return frozenset(found)
        if extras is not None:  # a key the model does not declare, read by extras_schema
            return self._below(self.loc[at : at + 1], extras, at + 1)
        if len(self.loc) == at + 1:  # a key refused as extra, or one still unknown
            return frozenset({self.loc[at:]})
        return frozenset()

    def _tuple(self, schema: Any, at: int) -> frozenset[_Loc]:
        index = self.loc[at]
        if not isinstance(index, int):
            return frozenset()
        items = schema.get("items_schema", [])
        variadic = schema.get("variadic_item_index")
        if variadic is None:
            choices = items[index : index + 1]
        elif index < variadic:
            choices = [items[index]]
        else:  # the variadic item, or one after it (which one depends on the length)
            choices = items[variadic:]
        return frozenset().union(*(self._below((index,), item, at + 1) for item in choices))

    def _dict(self, schema: Any, at: int) -> frozenset[_Loc]:
        key = self.loc[at : at + 1]
        values = self._below(key, schema.get("values_schema", {"type": "any"}), at + 1)
        if self.loc[at + 1 : at + 2] == ("[key]",):  # the key itself was refused
            return values | self._below(key, schema.get("keys_schema", {"type": "any"}), at + 2)
        return values

    def _union(self, schema: Any, at: int) -> frozenset[_Loc]:
        choices = schema["choices"]
        if len(choices) == 1 and schema.get("auto_collapse", True):
            only = choices[0]
            return self.walk(only[0] if isinstance(only, tuple | list) else only, at)
        if "custom_error_type" in schema:  # one error at the union itself, no branch
            return frozenset()
        label = self.loc[at]
        found: set[_Loc] = set()
        for choice in choices:
            if isinstance(choice, tuple | list):  # (schema, label): the label is the step
                if str(choice[1]) == label:
                    found |= self.walk(choice[0], at + 1)
            else:  # the step is the validator's name, which the schema does not give
                found |= self.walk(choice, at + 1)
        return frozenset(found)

    def _tagged_union(self, schema: Any, at: int) -> frozenset[_Loc]:
        if "custom_error_type" in schema:
            return frozenset()
        tag = self.loc[at]
        found: set[_Loc] = set()
        for key, choice in schema["choices"].items():
            value = getattr(key, "value", key)
            if tag in (key, value) or str(value) == str(tag):
                while isinstance(choice, str | int) and choice in schema["choices"]:
                    choice = schema["choices"][choice]  # an old-style tag naming another
                found |= self.walk(choice, at + 1)
        return frozenset(found)


def _field_locs(name: str, alias: Any) -> list[_Loc]:
    """The ``loc`` steps a field's errors may start with: its name, or an alias (a name,
    a path of keys and indexes, or a list of such paths)."""
    locs: list[_Loc] = [(name,)]
    if isinstance(alias, str):
        locs.append((alias,))
    elif isinstance(alias, list) and alias:
        paths = alias if all(isinstance(item, list) for item in alias) else [alias]
        locs.extend(tuple(path) for path in paths if path)
    return locs
