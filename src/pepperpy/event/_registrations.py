"""EventManager's "every registration" operations, as a mixin (:class:`Registrations`).

``off_all`` (pyee's ``remove_all_listeners``) and ``patterns`` (pyee's ``event_names``),
and the removal of weak registrations whose handler was collected (see
:mod:`._listeners` for why that removal is lazy).
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from ._patterns import PatternIndex, parse_pattern

if TYPE_CHECKING:
    from ._listeners import _Listener

__all__ = ["Registrations"]


class Registrations:
    """The registration bookkeeping :class:`~pepperpy.event.EventManager` shares; it
    sets the attributes below."""

    _index: PatternIndex[_Listener]
    _dead: deque[_Listener]

    def off_all(self, pattern: str | None = None) -> int:
        """Remove every registration made under exactly ``pattern``, or every
        registration of the manager when None; return how many were removed.

        pyee's ``remove_all_listeners(event)``. ``pattern`` is compared as written, as
        :meth:`off` compares it: ``off_all("user.*")`` removes what was registered
        under ``"user.*"``, not under ``"user.created"``. Weak registrations whose
        handler was collected are removed too, without being counted. Safe from inside
        a handler: an emit already running keeps its handler list. A ``pattern`` that
        is not a str is a ``TypeError``, a malformed one a ``PatternError``.
        """
        if pattern is not None:
            if not isinstance(pattern, str):
                raise TypeError(f"off_all(): pattern must be a str or None, got {pattern!r}")
            parse_pattern(pattern)
        self._prune()
        if pattern is None:
            found = [(listener.pattern, listener) for listener in self._index]
        else:
            found = [(pattern, listener) for _, listener in self._index.items_for(pattern)]
        removed = 0
        for under, listener in found:
            alive = listener.target() is not None
            if self._index.remove(under, listener.key) and alive:
                removed += 1
        return removed

    def patterns(self) -> list[str]:
        """The patterns (and types) handlers are registered under, each once, in the order
        of their first registration still in place (pyee's ``event_names()``).

        A pattern whose only registrations are weak ones that were collected is not
        among them.
        """
        self._prune()
        seen = (listener.pattern for listener in self._index if listener.target() is not None)
        return list(dict.fromkeys(seen))

    def _prune(self) -> None:
        """Remove the weak registrations whose handler was collected.

        The garbage collector's callback only queued them (in any thread, possibly
        while a lock was held); this runs in ordinary code: a registration, a removal,
        a listing, or an emit that reached a dead one.
        """
        dead = self._dead
        while dead:
            try:
                listener = dead.popleft()
            except IndexError:  # another thread took the last one
                return
            self._index.remove(listener.pattern, listener.key)
