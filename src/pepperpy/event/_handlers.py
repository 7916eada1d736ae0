"""Calling user handlers: sync or async; transports start each delivery in a Task of its own."""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from ._cancel import cancelling

__all__ = [
    "CUT_OFF",
    "Handler",
    "binds",
    "call",
    "check_handler",
    "check_not_bare",
    "cut_off",
    "is_async_callable",
    "outcome",
    "outcomes",
    "start",
]

Handler = Callable[[Any], Any]

#: the message of the ``CancelledError`` with which ``EventBus.serve()`` cancels the
#: deliveries still running at its ``shutdown_timeout`` (it logs them itself)
CUT_OFF = "cancelled at EventBus.serve()'s shutdown_timeout"


def cut_off(failure: BaseException | None) -> bool:
    """Whether ``failure`` ended a delivery that serve()'s ``shutdown_timeout`` cancelled:
    not a failure for a transport to log again (with a traceback) as an ERROR."""
    return isinstance(failure, asyncio.CancelledError) and failure.args[:1] == (CUT_OFF,)


def is_async_callable(handler: Callable[..., Any]) -> bool:
    """True for ``async def`` functions, also behind ``functools.partial`` or ``__call__``."""
    while isinstance(handler, functools.partial):
        handler = handler.func
    if inspect.iscoroutinefunction(handler):
        return True
    # what a call runs is the type's __call__: a class's own __call__ attribute is its
    # instances' (an async one there makes calling the class build an instance, no coroutine)
    call_method = getattr(type(handler), "__call__", None)  # noqa: B004
    return call_method is not None and inspect.iscoroutinefunction(call_method)


# what each kind of registration is called with, for each event (or dead letter)
_ARGUMENTS = {
    "handler": ("event",),
    "error callback": ("dead_letter",),
    "middleware": ("event", "next_handler"),
}


def check_handler(
    handler: object,
    what: str = "handler",
    takes: tuple[str, ...] | None = None,
    *,
    name: str | None = None,
) -> None:
    """Refuse what cannot be a handler: a non-callable, a generator function, or a
    callable that cannot be called with the arguments ``takes`` names.

    Calling a generator function (a ``def`` or ``async def`` with a stray ``yield``)
    runs none of its body: it returns a generator, which nobody iterates. Such a handler
    would be registered, "called" for every event, and do nothing, without an error, a
    dead letter or a log line; so every registration (manager, bus, processor, replay,
    projection, notifications) refuses it here. ``functools.partial`` and a callable
    instance's ``__call__`` are looked through.

    ``takes`` names the positional arguments each call passes: ``("event",)`` for a
    handler, ``("dead_letter",)`` for an error callback (the defaults, from ``what``),
    ``("state", "event")`` for a projection's, ``("event", "next_handler")`` for a
    middleware. A handler with no parameter, or with a second required one, would
    otherwise be taken and fail at every event. ``name`` replaces the handler's own
    name in the messages (say, to tell where a middleware came from).
    """
    if not callable(handler):
        raise TypeError(f"{what} must be callable, got {handler!r}")
    function: Any = handler
    while isinstance(function, functools.partial):
        function = function.func
    if not inspect.isfunction(function) and not inspect.ismethod(function):
        function = getattr(type(function), "__call__", function)  # noqa: B004
    kind = None
    if inspect.isasyncgenfunction(function):
        kind = "an async generator function"
    elif inspect.isgeneratorfunction(function):
        kind = "a generator function"
    if kind is not None:
        raise TypeError(
            f"{what} {name or _name(handler)} is {kind} (it contains a yield): calling it "
            "would run none of its body, so it would never handle anything; remove the yield"
        )
    _check_arguments(handler, what, takes or _ARGUMENTS.get(what, ("event",)), name)


def check_not_bare(call: str, pattern: object, example: str) -> None:
    """Refuse ``pattern`` when it is a function: ``@manager.on`` written without its
    type (``@manager.on`` above ``def handle(event)`` passes the function as the type).

    Said that way, not as "a pattern must be a str, got function", which names neither
    the mistake nor the fix. Anything else is left to the usual checks.
    """
    if callable(pattern) and not isinstance(pattern, str):
        raise TypeError(
            f"{call}() takes the event type or pattern first, got the function "
            f"{_name(pattern)}: a decorator needs it in parentheses, "
            f"@{call}({example!r}) above the function, or {call}({example!r}, handler)"
        )


def binds(handler: object, takes: tuple[str, ...]) -> bool | None:
    """Whether ``handler`` can be called with ``len(takes)`` positional values.

    The same signature :func:`check_handler` reads; None when it cannot be read, False
    when ``handler`` is not callable.
    """
    if not callable(handler):
        return False
    signature = _signature(handler)
    if signature is None:
        return None
    try:
        signature.bind(*(object() for _ in takes))
    except TypeError:
        return False
    return True


def _signature(handler: Callable[..., Any]) -> inspect.Signature | None:
    try:
        return inspect.signature(handler, follow_wrapped=False)
    except (TypeError, ValueError):
        return None


def _check_arguments(
    handler: Callable[..., Any], what: str, takes: tuple[str, ...], name: str | None = None
) -> None:
    """Refuse ``handler`` when its signature cannot bind ``len(takes)`` positional values.

    The signature is the one of what is called: a ``functools.partial`` without what it
    binds, a bound method or a callable instance without ``self``, a decorator's wrapper
    as written (not the function it wraps: ``__wrapped__`` is not followed, since a
    decorator may change the arguments). ``*args`` and defaults count. A callable whose
    signature cannot be read (some builtins, C extensions) is taken: nothing to go by.
    """
    signature = _signature(handler)
    if signature is None:
        return
    try:
        signature.bind(*(object() for _ in takes))
    except TypeError as exc:
        call = f"{what.rsplit(' ', 1)[-1]}({', '.join(takes)})"
        raise TypeError(
            f"{what} {name or _name(handler)} cannot be called as {call}: it takes "
            f"{_parameters(signature)} ({exc}){_unbound_hint(handler, signature)}"
        ) from None


def _unbound_hint(handler: Callable[..., Any], signature: inspect.Signature) -> str:
    """What to do when ``handler`` is a method taken from its class, without an instance.

    ``@manager.on("x")`` above a ``def handle(self, event)`` in a class body (as blinker's
    ``@signal.connect`` and pyee's ``@ee.on`` are often written) registers the plain
    function: nothing would pass ``self``.
    """
    first = next(iter(signature.parameters), None)
    if not inspect.isfunction(handler) or first not in ("self", "cls"):
        return ""
    return (
        f"; it looks like a method taken from its class (a decorator in the class body "
        f"gets the plain function, with no instance to pass as {first!r}): register the "
        f"bound method instead ({first}.{handler.__name__}, in __init__ or once the "
        f"instance exists)"
    )


def _parameters(signature: inspect.Signature) -> inspect.Signature:
    """``signature`` without its annotations: ``(event, extra)`` reads better in a message."""
    empty = inspect.Parameter.empty
    return signature.replace(
        parameters=[p.replace(annotation=empty) for p in signature.parameters.values()],
        return_annotation=empty,
    )


def _name(handler: object) -> str:
    return getattr(handler, "__qualname__", None) or repr(handler)


def start(delivery: Awaitable[Any]) -> asyncio.Task[Any]:
    """Run a delivery in a Task of its own: its own ``current_task()`` and context copy.

    Transports start every delivery this way. A handler must never run (even its first
    step) in the transport's task: whatever captures the current task (``asyncio.timeout``,
    ``TaskGroup``, ``current_task().cancel()``) or sets a context variable would then act
    on the publisher or on a reader loop shared by all subscriptions (docs/bus.md,
    "How handlers run"). CPython 3.11 has no correct eager start, so this costs one Task.
    """
    coro = delivery if inspect.iscoroutine(delivery) else _wait(delivery)
    return asyncio.get_running_loop().create_task(coro)


async def _wait(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


async def outcome(task: asyncio.Future[Any]) -> BaseException | None:
    """Wait for ``task``; return what it raised, a handler's own ``CancelledError`` included.

    A cancellation aimed at the *waiting* task while it waits is re-raised, and reaches
    ``task`` too; a ``CancelledError`` the delivery raised by itself (say, it awaited a
    future someone else cancelled) is a failure of that delivery, returned like any other
    exception, so a transport's loop goes on with the next one.

    Only a cancellation that came while waiting counts: the waiter's count is taken
    first. A publish made in the cleanup of a cancelled task (``finally:``, ``except
    CancelledError:``) waits here with a count of 1 already, and a delivery cancelled on
    its own is still its failure there. A task already done is not waited for, so needs
    no count.
    """
    since = None if task.done() else cancelling()
    try:
        await task
    except asyncio.CancelledError as exc:
        if since is not None and cancelling() > since:
            raise
        return exc
    except Exception as exc:
        return exc
    return None


async def outcomes(tasks: Sequence[asyncio.Future[Any]]) -> list[BaseException | None]:
    """:func:`outcome` of each task, waiting for all; cancelling the waiter cancels them."""
    if len(tasks) == 1:
        return [await outcome(tasks[0])]
    results = await asyncio.gather(*tasks, return_exceptions=True)
    return [r if isinstance(r, BaseException) else None for r in results]


async def call(handler: Handler, is_async: bool, event: Any) -> None:
    """Call a handler to completion, awaiting what it returns if it is awaitable."""
    if is_async:
        await handler(event)
        return
    result = handler(event)
    if result is not None and inspect.isawaitable(result):
        await result


def awaitable_result(result: Any) -> Awaitable[Any] | None:
    """``result`` if a sync handler returned something awaitable, else None."""
    if result is not None and inspect.isawaitable(result):
        return result  # type: ignore[no-any-return,unused-ignore]
    return None
