"""EventManager's registration bookkeeping, as a mixin (:class:`Registrations`).

Adding a registration (what :meth:`~pepperpy.event.EventManager.on` and ``once`` call),
``listening`` (a registration for a ``with`` block), ``off``, ``handlers``, ``off_all``
(pyee's ``remove_all_listeners``), ``patterns`` (pyee's ``event_names``),
``on_error``/``off_error``, and the removal of weak registrations whose handler was
collected (see :mod:`._listeners` for why that removal is lazy). Nothing here is on
the emit path: an emit reads the index directly.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any, TypeVar, overload

from ._errors import ClosedError, ListenerLimitError, PatternError
from ._handlers import check_handler, check_not_bare, is_async_callable
from ._listeners import WeakListener, _Listener
from ._patterns import PatternIndex, parse_pattern, plain_name
from ._removal import Removed, check_removal, remove_last

if TYPE_CHECKING:
    from ._manager import DeadLetter

__all__ = ["ErrorCallback", "Registrations"]

H = TypeVar("H", bound=Callable[..., Any])
ErrorCallback = Callable[["DeadLetter"], Any]


def _first(entry: tuple[ErrorCallback, bool]) -> ErrorCallback:
    return entry[0]


class Registrations:
    """The registration bookkeeping :class:`~pepperpy.event.EventManager` shares; it
    sets the attributes below."""

    max_listeners: int | None
    _index: PatternIndex[_Listener]
    _dead: deque[WeakListener]
    _lock: threading.Lock
    _closed: bool
    _uses_once: bool
    _error_callbacks: list[tuple[ErrorCallback, bool]]

    def listening(
        self,
        event_type: str,
        handler: H,
        *,
        once: bool = False,
        priority: int = 0,
        weak: bool = False,
    ) -> AbstractContextManager[H]:
        """Register ``handler`` for the ``with`` block only (blinker's ``connected_to``).

        ``with manager.listening("user.*", seen.append): ...`` registers as :meth:`on`
        does and, on leaving the block (an exception included), removes that one
        registration: the handler's other registrations, made before or inside the
        block, stay. ``as`` gives ``handler``. What :meth:`on` refuses is refused here,
        at the call.
        """
        self._check_options(event_type, once, priority, weak)
        check_handler(handler)
        return self._listening(event_type, handler, once, priority, weak)

    @contextmanager
    def _listening(
        self, pattern: str, handler: H, once: bool, priority: int, weak: bool
    ) -> Iterator[H]:
        listener = self._add(pattern, handler, once, priority, weak)
        try:
            yield handler
        finally:
            self._index.remove(listener.pattern, listener.key)

    def _check_options(self, event_type: str, once: bool, priority: int, weak: bool) -> None:
        check_not_bare("manager.once" if once else "manager.on", event_type, "user.created")
        parse_pattern(event_type)
        if not isinstance(once, bool):
            raise TypeError(f"once must be a bool, got {once!r}")
        if not isinstance(weak, bool):
            raise TypeError(f"weak must be a bool, got {weak!r}")
        if not isinstance(priority, int) or isinstance(priority, bool):
            raise TypeError(f"priority must be an int, got {priority!r}")
        self._check_open()

    def _add(
        self, pattern: str, handler: Callable[..., Any], once: bool, priority: int, weak: bool
    ) -> _Listener:
        check_handler(handler)
        self._check_open()
        pattern = plain_name(pattern)  # a StrEnum member is kept as the str it holds
        self._prune()  # dead weak registrations do not count against max_listeners
        if weak:
            listener: _Listener = WeakListener(
                pattern, handler, once, priority, self._dead, self._prune
            )
        else:
            listener = _Listener(pattern, handler, once, priority)
        if once:
            self._uses_once = True  # emits to several handlers take once ones first
        with self._lock:  # registrations from other threads count too
            if self.max_listeners is not None:
                # a once registration that fired stays until its Task starts (see
                # EventManager._fire_once): no longer a handler, it takes no slot
                items = self._index.items_for(pattern)
                count = sum(1 for _, item in items if not item.fired)
                if count >= self.max_listeners:
                    raise ListenerLimitError(
                        f"{pattern!r} already has {count} handlers "
                        f"(max_listeners={self.max_listeners})"
                    )
            listener.key = self._index.add(pattern, listener)
        if listener.target() is None:  # a weak one collected before it had its key
            self._index.remove(pattern, listener.key)
        return listener

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError("the EventManager is closed: a handler added now would never run")

    def off(self, event_type: str, handler: Callable[..., Any]) -> Awaitable[bool]:
        """Remove ``handler``'s registrations for ``event_type``; ``await`` it for True if
        any was removed.

        The removal is done when ``off`` returns: awaiting the result only reads it (it
        never suspends), and a forgotten ``await`` still removes the handler. Safe from
        inside a handler: an emit already running keeps its handler list.
        ``event_type`` that is not a str, or a ``handler`` that is not callable, is a
        ``TypeError`` (no registration can have been made with it).
        """
        check_removal("off", event_type, handler, pattern_name="event_type")
        self._prune()
        removed = False
        for key, listener in self._index.items_for(event_type):
            if listener.target() == handler and self._index.remove(event_type, key):
                # a once registration that fired (its Task not started yet) goes too, so
                # a cancelled emit cannot give it back, but it was no handler any more
                removed = removed or not listener.fired
        return Removed(removed)

    def handlers(self, event_type: str) -> list[Callable[..., Any]]:
        """The handlers an event of type ``event_type`` would reach, in call order.

        A weak handler that was collected is not among them.
        """
        self._prune()
        try:
            listeners = self._index.match(event_type)
        except PatternError as exc:  # a pattern given: say what the argument is
            raise PatternError(
                exc.pattern,
                exc.position,
                f"{exc.reason} (handlers() takes an event's type, such as 'order.placed', "
                "and gives the handlers an event of that type would reach)",
                "event type",
            ) from None
        # not a once handler that fired (claimed by an emit, its Task not started yet)
        found = (listener.target() for listener in listeners if not listener.fired)
        return [handler for handler in found if handler is not None]

    @overload
    def on_error(self, callback: None = None) -> Callable[[H], H]: ...

    @overload
    def on_error(self, callback: H) -> H: ...

    def on_error(self, callback: H | None = None) -> H | Callable[[H], H]:
        """Register a sync or async callback that receives each :class:`DeadLetter`."""
        if callback is None:
            return self.on_error  # @manager.on_error(): the same checks as the direct form
        check_handler(callback, "error callback")
        self._error_callbacks.append((callback, is_async_callable(callback)))
        return callback

    def off_error(self, callback: Callable[..., Any]) -> bool:
        """Undo one :meth:`on_error` of ``callback``: True if it was registered.

        A callback registered twice is called twice per dead letter; each ``off_error``
        removes one registration, the most recent first. Callbacks compare with ``==``
        (a bound method taken again matches). Safe from inside an error callback: the
        dead letter being dispatched still reaches every callback registered when its
        dispatch began; the next one does not reach ``callback``. A ``callback`` that
        is not callable is a ``TypeError``.
        """
        return remove_last("off_error", self._error_callbacks, callback, _first)

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
            alive = listener.target() is not None and not listener.fired
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
        seen = (
            listener.pattern
            for listener in self._index
            if listener.target() is not None and not listener.fired  # a once one taken
        )
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
            if self._index.remove(listener.pattern, listener.key):  # once per registration
                listener.removed()
