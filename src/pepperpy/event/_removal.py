"""Undoing registrations: the argument checks and the one-callback removal they share.

Every registration has its removal, named after it: ``on``/``off``,
``handle``/``remove_handler``, ``subscribe``/``unsubscribe``, ``on_error``/``off_error``.
A removal returns True when it removed a registration and False when there was none;
what it is given is checked as the registration checks it, so a pattern or a handler
passed the wrong way round is a ``TypeError`` naming it, not a quiet ``False``.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any, TypeVar

from ._patterns import parse_pattern

__all__ = ["Removed", "check_removal", "remove_last"]

T = TypeVar("T")


def check_removal(
    method: str, pattern: object, handler: object, *, pattern_name: str = "pattern"
) -> None:
    """Refuse what no registration can have been made with: a pattern that is not a str
    or not a valid pattern (:class:`PatternError`), a handler that is not callable."""
    if not isinstance(pattern, str):
        raise TypeError(f"{method}(): {pattern_name} must be a str, got {pattern!r}")
    parse_pattern(pattern)
    if not callable(handler):
        raise TypeError(f"{method}(): the handler to remove must be callable, got {handler!r}")


def remove_last(
    method: str, entries: list[T], callback: object, callback_of: Callable[[T], Any]
) -> bool:
    """Remove the most recent entry of ``entries`` whose callback equals ``callback``.

    ``==`` as the registrations compare (a bound method taken again, ``obj.method``, is
    a new object that equals the one registered). One entry: a callback registered
    twice is called twice, and each removal undoes one registration, the last first.
    The list is changed in place; a dispatch that copied it first is not affected.
    """
    if not callable(callback):
        raise TypeError(f"{method}(): the callback to remove must be callable, got {callback!r}")
    for index in range(len(entries) - 1, -1, -1):
        if callback_of(entries[index]) == callback:
            del entries[index]
            return True
    return False


class Removed:
    """What :meth:`EventManager.off` returns: the removal, already done.

    ``await manager.off(...)`` gives True when a registration was removed (the contract's
    form). The removal itself happens in the call, not when the result is awaited, so
    ``manager.off(...)`` without ``await`` (pyee's and blinker's habit) removes the handler
    all the same instead of leaving it registered behind a never-awaited coroutine; the
    result is truthy exactly when something was removed, awaited or not.
    """

    __slots__ = ("removed",)

    def __init__(self, removed: bool) -> None:
        self.removed = removed

    def __await__(self) -> Generator[Any, None, bool]:
        return self.removed
        yield  # pragma: no cover - makes this a generator: awaiting never suspends

    def __bool__(self) -> bool:
        return self.removed

    def __repr__(self) -> str:
        return f"<Removed {self.removed}>"
