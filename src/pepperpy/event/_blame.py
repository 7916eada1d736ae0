"""Naming the handler that failed when the callable a manager or bus ran stands for others.

A processor attached to a manager or a bus is registered there as an internal callable
(its attachment's ``deliver``), which runs the processor's middleware and handlers. When
it fails, the dead letter and the log line must name what the user registered: the
processor's handler that raised, or else the processor and the pattern it was attached
with. Such a callable is a bound method of a :class:`Delegating` object, which says who
failed; :func:`blamed` asks it. It runs on the failure path only (building a dead letter,
logging a failure), never for an event that succeeds.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._event import Event
    from ._manager import DeadLetter

__all__ = ["Delegating", "blamed", "handler_name", "named"]


class Delegating(ABC):
    """An object whose bound method is registered as a handler and runs other handlers."""

    __slots__ = ()

    @abstractmethod
    def failed(self, event: Event, exc: BaseException) -> tuple[Callable[..., Any], str]:
        """Who failed when the registered method raised ``exc`` for ``event``.

        Returns the callable to record as the dead letter's handler and its name for logs.
        Each failure is asked about once (for its dead letter, or for the log line of a
        cancelled emit), so an implementation may forget it then.
        """


def handler_name(handler: Callable[..., Any]) -> str:
    """A handler's name for a log line: its ``__qualname__``, else its ``repr``."""
    name = getattr(handler, "__qualname__", None)
    return name if isinstance(name, str) else repr(handler)


def named(handler: Callable[..., Any], event: Event, exc: BaseException) -> str:
    """The name a log line gives the registered ``handler`` that raised ``exc``."""
    owner = getattr(handler, "__self__", None)
    if isinstance(owner, Delegating):
        return owner.failed(event, exc)[1]
    return handler_name(handler)


def blamed(letter: DeadLetter) -> tuple[DeadLetter, str]:
    """``letter`` naming the handler that failed, and that handler's name for the log.

    A letter whose handler is not a :class:`Delegating` object's method is returned as
    it is, with the handler's ``__qualname__``.
    """
    handler = letter.handler
    owner = getattr(handler, "__self__", None)
    if not isinstance(owner, Delegating):
        return letter, handler_name(handler)
    who, name = owner.failed(letter.event, letter.exception)
    return dataclasses.replace(letter, handler=who), name
