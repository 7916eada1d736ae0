"""What :class:`~pepperpy.event.EventManager` keeps per registration: a listener.

A :class:`_Listener` holds its handler strongly (the default). A :class:`WeakListener`
(``on(..., weak=True)``) holds it through a :class:`weakref.WeakMethod` (a bound method)
or a :class:`weakref.ref` (any other callable), so the registration does not keep the
handler, nor a bound method's object, alive.

Removal of a collected handler's registration is lazy. The weakref callback runs
wherever the garbage collector happens to run: in any thread, between any two
bytecodes, possibly while that thread holds the manager's or the index's lock (neither
is reentrant). So it does one atomic thing, appending the listener to the manager's
``dead`` deque; the manager removes what the deque holds at its next registration,
removal, ``handlers()``, ``patterns()`` or ``off_all()``, and when an emit reaches a
dead listener. Until then a dead listener stays in the index, and an emit that reaches
it calls a no-op in the handler's place (sync or async like the handler was), which
also does that removal: the hot path for strong listeners reads ``listener.handler`` as
before, with no check added.

A weak handler that is a function (a lambda, a closure) or a ``functools.partial`` and
is gone before any event reached it was almost certainly held by nothing else: made in
the ``on()`` call, collected as soon as it returned, it never ran. Removing such a
registration logs one WARNING naming it (:meth:`WeakListener.removed`), in ordinary
code, never in the collector's callback. A bound method (or a callable object) whose
object went away before any event is what ``weak=True`` is for: no word about it.
"""

from __future__ import annotations

import inspect
import logging
import weakref
from collections import deque
from collections.abc import Callable
from functools import partial
from types import FunctionType, MethodType
from typing import Any

from ._blame import handler_name
from ._handlers import Handler, is_async_callable

__all__ = ["WeakListener", "_Listener", "weak_reference"]

logger = logging.getLogger("pepperpy.event")

#: what a plain weak reference returns when called, also for a WeakMethod (its object)
_referent = weakref.ref.__call__


class _Listener:
    __slots__ = ("fired", "handler", "is_async", "key", "once", "pattern", "priority")

    def __init__(self, pattern: str, handler: Handler, once: bool, priority: int) -> None:
        self.pattern = pattern
        self.handler = handler
        self.is_async = is_async_callable(handler)
        self.once = once
        self.priority = priority
        self.fired = False
        self.key = 0

    def target(self) -> Handler | None:
        """The handler, or None once a weak one was collected."""
        return self.handler


def weak_reference(handler: Handler, callback: Callable[[Any], object]) -> weakref.ref[Any]:
    """A weak reference to ``handler``: a WeakMethod for a bound method, else a ref.

    A bound method is a new object each time it is taken (``obj.method``), dead as soon
    as ``on()`` returns if held by a plain ref; WeakMethod holds its object and function
    weakly instead. What cannot be weakly referenced is a ``TypeError`` saying so.
    """
    owner = getattr(handler, "__self__", None)
    if inspect.isbuiltin(handler) and owner is not None and not inspect.ismodule(owner):
        # list.append taken from a list: a new object each time, held by nobody else,
        # so a weak reference to it is dead when on() returns
        raise TypeError(
            f"weak=True: handler {handler!r} is a builtin's bound method, made anew "
            "each time it is taken: held weakly, it would be gone at once; wrap it in a "
            "function you keep, or register it with weak=False (the default)"
        )
    try:
        if inspect.ismethod(handler):
            return weakref.WeakMethod(handler, callback)
        return weakref.ref(handler, callback)
    except TypeError as exc:
        raise TypeError(
            f"weak=True: handler {getattr(handler, '__qualname__', None) or handler!r} "
            f"cannot be weakly referenced ({exc}); an instance of a class with "
            "__slots__ but no __weakref__ cannot: register it with weak=False (the "
            "default) and remove it with off()"
        ) from None


def _made_in_the_call(handler: Handler) -> str | None:
    """The name to report ``handler`` by if it is gone before it ever ran: a function or
    a ``functools.partial`` (what a call makes and drops); None for anything else."""
    if isinstance(handler, FunctionType):
        return handler_name(handler)
    if isinstance(handler, partial):
        return f"functools.partial({handler_name(handler.func)}, ...)"
    return None


class WeakListener(_Listener):
    """A listener holding its handler weakly (see the module's docstring)."""

    __slots__ = ("_dead", "_function", "_prune", "_ref", "_unrun")

    def __init__(
        self,
        pattern: str,
        handler: Handler,
        once: bool,
        priority: int,
        dead: deque[WeakListener],
        prune: Callable[[], None],
    ) -> None:
        self._dead = dead
        self._prune = prune
        self._ref = weak_reference(handler, self._died)
        #: a bound method's function, held weakly as WeakMethod holds it, read directly:
        #: WeakMethod's own __call__ (Python code) costs about twice this property
        self._function: weakref.ref[Any] | None = None
        if isinstance(handler, MethodType):  # what weak_reference held with a WeakMethod
            self._function = weakref.ref(handler.__func__)
        #: the handler's name while no event has reached it, if it is reported when it
        #: is gone by then (see the module's docstring); None once it ran
        self._unrun = _made_in_the_call(handler)
        self.pattern = pattern
        self.is_async = is_async_callable(handler)
        self.once = once
        self.priority = priority
        self.fired = False
        self.key = 0

    @property
    def handler(self) -> Handler:
        """The handler while it lives; then a no-op that removes this registration."""
        target = _referent(self._ref)  # a WeakMethod's object, or the handler itself
        if target is not None:
            function = self._function
            if function is None:
                self._unrun = None  # it ran (a bound method is never reported)
                return target  # type: ignore[no-any-return,unused-ignore]
            method = function()
            if method is not None:
                return MethodType(method, target)
        return self._gone_async if self.is_async else self._gone

    @handler.setter
    def handler(self, value: Handler) -> None:  # pragma: no cover - never set
        raise AttributeError("a weak listener's handler is set once, at registration")

    def target(self) -> Handler | None:
        return self._ref()

    def removed(self) -> None:
        """This registration was removed because its handler was collected: log it if
        the handler was made in the call (see the module's docstring) and never ran.

        Called once per registration, by the code that removed it from the index.
        """
        name = self._unrun
        if name is None:
            return
        self._unrun = None
        logger.warning(
            "weak handler %s registered for %r was collected before any event reached it, "
            "so it never ran: weak=True holds only a weak reference, and a lambda, a "
            "closure or a functools.partial made in the on() call is gone as soon as on() "
            "returns; keep a reference to it for as long as it should run, or register it "
            "with weak=False (the default)",
            name,
            self.pattern,
        )

    def _died(self, _: object) -> None:
        # called by the garbage collector, in any thread: one atomic append, no lock
        self._dead.append(self)

    def _gone(self, _: object) -> None:
        self._dead.append(self)  # also when it died before it had its key
        self._prune()

    async def _gone_async(self, _: object) -> None:
        self._gone(_)
