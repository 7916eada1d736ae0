"""The middleware chain of an :class:`~pepperpy.event.EventProcessor`: what a middleware
is, how it is checked when registered, and how each step calls the next."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, cast, runtime_checkable

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
        result = step(event, inner)
        if result is not None and inspect.isawaitable(result):
            await result

    return run_sync


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
