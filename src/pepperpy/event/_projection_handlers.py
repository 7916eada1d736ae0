"""A projection's handlers, and the runs under way that changing them would split.

``Projection.on`` and ``Projection.off`` are refused while a ``run``, ``rebuild`` or
``follow`` of the projection is under way (one waiting for its turn too, and from inside
a handler): the state would be folded partly with the handler and partly without, so it
would depend on when the handler was added or removed. The count of runs under way and
the index change under one lock, shared by every thread, so no run starts while the
index changes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ._errors import ReplayError
from ._handlers import check_handler, is_async_callable
from ._patterns import PatternIndex, parse_pattern, plain_name
from ._removal import check_removal
from ._replay_options import handlers_for

__all__ = ["Apply", "ProjectionHandlers"]

_WHEN = "when they have returned or been cancelled"


class Apply:
    """One registered ``handler(state, event)``."""

    __slots__ = ("function", "is_async")

    def __init__(
        self, function: Callable[..., Any], takes: tuple[str, ...] = ("state", "event")
    ) -> None:
        check_handler(function, takes=takes)
        self.function = function
        self.is_async = is_async_callable(function)


class ProjectionHandlers:
    """The handlers of the projection called ``name``, and how many runs are under way."""

    __slots__ = ("_active", "_index", "_lock", "_name", "_takes")

    def __init__(self, name: str, takes: tuple[str, ...] = ("state", "event")) -> None:
        self._name = name
        #: what a handler is called with (a table projection's get ``(db, event)``)
        self._takes = takes
        self._index: PatternIndex[Apply] = PatternIndex()
        self._active = 0  # runs, rebuilds and follows under way, in any thread
        self._lock = threading.Lock()

    def add(self, pattern: str, function: Callable[..., Any]) -> None:
        """Register ``function`` under ``pattern`` (what ``on`` does), unless refused.

        An enum member as ``pattern`` is kept as the plain str it holds, as everywhere.
        """
        parse_pattern(pattern)
        pattern = plain_name(pattern)
        apply = Apply(function, self._takes)
        with self._lock:
            self._refuse_while_applying(
                "on",
                "events applied before it went without the handler, later ones would go with it",
                f"register handlers before running, or call it {_WHEN} (then rebuild() "
                "folds the whole log with it)",
            )
            self._index.add(pattern, apply)

    def remove(self, pattern: str, handler: Callable[..., Any]) -> bool:
        """Remove ``handler`` under exactly ``pattern`` (what ``off`` does), unless refused."""
        check_removal("off", pattern, handler)
        pattern = plain_name(pattern)
        with self._lock:
            self._refuse_while_applying(
                "off",
                "the state would be folded partly with the handler and partly without",
                f"call it {_WHEN}",
            )
            return self._index.remove_where(pattern, lambda apply: apply.function == handler)

    def _refuse_while_applying(self, method: str, why: str, instead: str) -> None:
        """Raise :class:`ReplayError` if a run is under way. The caller holds the lock."""
        if self._active:
            raise ReplayError(
                f"projection {self._name!r}: {method}() refused while a run, rebuild or "
                f"follow is under way ({why}); {instead}"
            )

    def chosen(self, event_type: str) -> tuple[Apply, ...]:
        """What an event of ``event_type`` is applied with (nothing: not a valid topic)."""
        return handlers_for(self._index, event_type)

    def every(self) -> tuple[Apply, ...]:
        """Every registration, in the order made."""
        with self._lock:
            return tuple(self._index)

    @contextmanager
    def applying(self) -> Iterator[None]:
        """Mark a ``run``, ``rebuild`` or ``follow`` as under way (``on``/``off`` refused)."""
        with self._lock:
            self._active += 1
        try:
            yield
        finally:
            with self._lock:
                self._active -= 1
