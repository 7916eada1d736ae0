"""The middleware chain of an :class:`~pepperpy.event.EventProcessor`: what a middleware
is, how it is checked when registered, and how each step calls the next."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, cast, runtime_checkable

from ._blame import handler_name
from ._event import Event
from ._handlers import binds, check_handler, is_async_callable

__all__ = ["Middleware", "MiddlewareSource", "NextHandler", "as_step", "link"]

NextHandler = Callable[[Event], Awaitable[None]]
Middleware = Callable[[Event, NextHandler], Any]


@runtime_checkable
class MiddlewareSource(Protocol):
    """An object that can produce a middleware (``collector.measure(name)`` is one)."""

    def as_middleware(self) -> Middleware: ...


class _Next:
    """``next_handler`` for an async middleware: no extra coroutine frame per step."""

    __slots__ = ("inner", "step")

    def __init__(self, step: Middleware, inner: NextHandler) -> None:
        self.step = step
        self.inner = inner

    def __call__(self, event: Event) -> Awaitable[None]:
        return self.step(event, self.inner)  # type: ignore[no-any-return]


def link(step: Middleware, inner: NextHandler) -> NextHandler:
    if is_async_callable(step):
        return _Next(step, inner)

    async def run_sync(event: Event) -> None:
        made: list[Awaitable[None]] = []  # what the step's calls of next_handler returned

        def next_handler(event: Event) -> Awaitable[None]:
            awaitable = inner(event)
            made.append(awaitable)
            return awaitable

        try:
            result = step(event, next_handler)
            if result is not None and inspect.isawaitable(result):
                await result
        finally:
            dropped = _close_unstarted(made)
        if dropped:
            raise TypeError(
                f"sync middleware {handler_name(step)} called next_handler(event) but did "
                "not return what it returned, so the rest of the chain and the handlers "
                "did not run: return next_handler(event), or make it an async def that "
                "awaits next_handler(event)"
            )

    return run_sync


def _close_unstarted(made: list[Awaitable[None]]) -> bool:
    """Close the coroutines in ``made`` that never started; True if there was one.

    Closed, a dropped coroutine does not warn "never awaited" later, far from its cause.
    """
    dropped = False
    for awaitable in made:
        if inspect.iscoroutine(awaitable) and inspect.getcoroutinestate(awaitable) == (
            inspect.CORO_CREATED
        ):
            awaitable.close()
            dropped = True
    return dropped


_MIDDLEWARE_ARGUMENTS = ("event", "next_handler")


def as_step(func: Any) -> Middleware:
    """The chain step ``func`` registers as, or a ``TypeError`` saying why it cannot be one.

    The check is the one every registration uses (``check_handler``), for the call
    ``middleware(event, next_handler)``: a generator function, or a callable whose
    signature cannot take those two arguments, is refused here rather than failing (or
    silently doing nothing) at every event.
    """
    if inspect.isclass(func):
        # a class is callable, but calling it with (event, next_handler) constructs it
        raise TypeError(
            f"middleware must be an instance, not the class {func.__qualname__}: "
            f"pass {func.__name__}(...)"
        )
    if isinstance(func, MiddlewareSource) and not binds(func, _MIDDLEWARE_ARGUMENTS):
        step = func.as_middleware()
        source = f"{func!r}.as_middleware()"
        if not callable(step) or inspect.isclass(step):
            raise TypeError(f"{source} must return a middleware instance, got {step!r}")
        check_handler(step, "middleware", _MIDDLEWARE_ARGUMENTS, name=f"from {source}")
        return step
    check_handler(func, "middleware", _MIDDLEWARE_ARGUMENTS)
    return cast(Middleware, func)
