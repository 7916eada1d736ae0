"""The contract of a compiled schema node, and what every node reports a problem with.

A node's ``check`` walks a value, appends a :class:`~pepperpy.event.ValidationProblem`
for every mismatch (its path as :func:`join_path` writes it, the value as
:func:`describe` shows it) and returns the converted value, or :data:`INVALID`.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any, Literal

from .._errors import ValidationProblem
from .._frozen_types import FrozenDict, FrozenList

__all__ = [
    "INVALID",
    "MISSING",
    "Extra",
    "Node",
    "Problems",
    "Unique",
    "describe",
    "join_path",
    "key_path",
]


Problems = list[ValidationProblem]


Extra = Literal["forbid", "ignore", "allow"]


#: how an array's items must differ: as converted values (a Python ``set``), or as the
#: JSON values given (JSON Schema ``uniqueItems``); None: duplicates allowed
Unique = Literal["values", "json"] | None


class _Invalid:
    __slots__ = ()

    def __repr__(self) -> str:
        return "INVALID"


#: returned by ``check`` when the value could not be converted (problems were recorded)
INVALID: Any = _Invalid()


#: the default of a field that has none
MISSING: Any = _Invalid()


def describe(value: Any) -> str:
    """A short description of a value for the ``actual`` of a problem.

    Stored events' data is frozen (``FrozenDict``, ``FrozenList``):
    it is named ``dict`` and ``list``, as a payload given as it is, not by the
    library's internal type. ``None`` (JSON ``null``) is shown as itself: ``NoneType
    None`` read as noise.
    """
    if value is None:
        return "None"
    name = _SHOWN_NAMES.get(type(value)) or type(value).__name__
    try:
        text = repr(value)
    except RecursionError:  # data nested too deeply (its problem says so)
        return f"{name} nested too deeply to show"
    except Exception as exc:  # the caller's object: its failure is no reason to crash
        return f"{name} (its repr raised {type(exc).__name__})"
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{name} {text}"


#: the name a problem shows for the library's own containers
_SHOWN_NAMES: dict[type, str] = {FrozenDict: "dict", FrozenList: "list"}


def join_path(path: str, key: str | int) -> str:
    """``path`` extended by an object key or an array index, as problems show it."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    if key.isidentifier():
        return f"{path}.{key}" if path else key
    return f"{path}[{key!r}]"


def key_path(path: str, key: object) -> str:
    """``path`` extended by a mapping's key, which may not be a str (shown by its repr)."""
    return join_path(path, key if isinstance(key, str) else repr(key))


class Node(abc.ABC):
    """A compiled schema node."""

    expected = "any value"

    def children(self) -> Sequence[Node]:
        """The nodes directly below this one (for node kinds ``walk`` does not know)."""
        return ()

    @abc.abstractmethod
    def check(self, value: Any, path: str, problems: Problems) -> Any:
        """Return ``value`` converted, or INVALID after appending its problems."""

    def fail(self, value: Any, path: str, problems: Problems, message: str | None = None) -> Any:
        problems.append(
            ValidationProblem(path, self.expected, describe(value), message or "wrong type")
        )
        return INVALID
