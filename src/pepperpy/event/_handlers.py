"""Calling user handlers: sync or async, started eagerly so quick ones need no Task."""

from __future__ import annotations

import asyncio
import functools
import inspect
import types
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import Any

__all__ = ["Handler", "call", "is_async_callable", "resume", "start"]

Handler = Callable[[Any], Any]


def is_async_callable(handler: Callable[..., Any]) -> bool:
    """True for ``async def`` functions, also behind ``functools.partial`` or ``__call__``."""
    while isinstance(handler, functools.partial):
        handler = handler.func
    if inspect.iscoroutinefunction(handler):
        return True
    call_method = getattr(handler, "__call__", None)  # noqa: B004
    return call_method is not None and inspect.iscoroutinefunction(call_method)


@types.coroutine
def _resume(coro: Coroutine[Any, Any, Any], yielded: Any) -> Generator[Any, Any, Any]:
    """Finish a coroutine that was stepped once outside a Task, inside one."""
    while True:
        try:
            sent = yield yielded
        except BaseException as exc:  # cancellation or close: forward into the coroutine
            try:
                yielded = coro.throw(exc)
            except StopIteration as stop:
                return stop.value
        else:
            try:
                yielded = coro.send(sent)
            except StopIteration as stop:
                return stop.value


async def resume(coro: Coroutine[Any, Any, Any], yielded: Any) -> Any:
    """A coroutine finishing ``coro``, which already yielded ``yielded`` once."""
    return await _resume(coro, yielded)


def start(
    coro: Coroutine[Any, Any, Any],
) -> asyncio.Task[Any] | None:
    """Run ``coro`` eagerly up to its first suspension.

    Returns None when it finished without suspending (no Task was created), else a Task
    that carries on from where it stopped. Exceptions raised before the first
    suspension propagate to the caller.

    Caveat: the first step runs in the *caller's* task and context, the rest in the new
    Task. Whatever captures the current task or sets a context variable before the
    first suspension (``asyncio.timeout``, ``TaskGroup``, ``ContextVar.set``/``reset``)
    therefore sees the caller, not the handler. ``EventManager`` no longer uses this
    (see docs/manager.md, "How handlers run").
    """
    try:
        yielded = coro.send(None)
    except StopIteration:
        return None
    return asyncio.get_running_loop().create_task(resume(coro, yielded))


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
