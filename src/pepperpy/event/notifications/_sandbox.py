"""Bounds on what a notification template may compute: size, time and work in all.

Jinja2's sandbox keeps templates away from Python internals and caps ``range``, but
the rest runs as it is: ``{{ 9 ** 9999999 }}`` computes for seconds, ``{{ 'a' * 10**9 }}``
allocates a gigabyte, and fifty ``{% set s = s ~ s %}`` double a string fifty times. The
environment made by :func:`~._environment.bounded_environment` refuses such work before
it is done, with Jinja2's ``SecurityError``:

* every value a template computes (by an operator, ``~``, a filter, a call, a list,
  tuple or dict display, a block of output captured by ``{% set %}``, a macro or a
  ``{% filter %}``) may be at most
  :data:`OUTPUT_LIMIT` characters long written out (:func:`~._measure.measure`), and the
  operators, filters and str methods that make long values from short ones are refused
  before they run when their result would be longer; ``**`` whose integer result would
  pass :data:`INT_BITS` bits is refused;
* all the values one render computes add up to at most :data:`WORK_LIMIT` characters,
  so a loop cannot keep what each step makes (``list.append``), nor recursion, nor a
  long template source, fill memory with values each under the limit;
* each rendered part may be at most :data:`OUTPUT_LIMIT` characters;
* a render still running after :data:`RENDER_TIMEOUT` seconds stops: the deadline is
  checked at every loop step, attribute or item read, call, filter, operator and piece
  of output.

A single step bounded by those sizes still runs to its end (a sort of a list of a
million items): a render overruns its deadline by that step at most.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = [
    "INLINE_BUDGET",
    "INT_BITS",
    "OUTPUT_LIMIT",
    "RENDER_TIMEOUT",
    "WORK_LIMIT",
    "OutOfTime",
    "in_thread",
    "past_deadline",
    "render_bounded",
    "rendered",
    "rendering",
    "spend",
]

#: characters a rendered part, or any value a template computes, may have written out
OUTPUT_LIMIT = 1_000_000
#: characters all the values one render computes may have in all
WORK_LIMIT = 32 * OUTPUT_LIMIT
#: bits an integer a template computes with ``**`` may have (about 4900 decimal digits)
INT_BITS = 16_384
#: seconds one template part may take to render
RENDER_TIMEOUT = 5.0

T = TypeVar("T")

_state = threading.local()


class rendering:  # noqa: N801 - a context manager used like a function
    """Within it, this thread's renders stop at ``time.monotonic() + timeout`` and may
    compute :data:`WORK_LIMIT` characters in all."""

    __slots__ = ("_previous", "_spent", "_timeout")

    def __init__(self, timeout: float | None = None) -> None:
        self._timeout = RENDER_TIMEOUT if timeout is None else timeout
        self._previous: float | None = None
        self._spent = 0

    def __enter__(self) -> None:
        self._previous = getattr(_state, "deadline", None)
        self._spent = getattr(_state, "spent", 0)
        deadline = time.monotonic() + self._timeout
        # nested (a render inside an inline attempt): the earlier deadline holds, and
        # the work done counts against one budget
        _state.deadline = deadline if self._previous is None else min(deadline, self._previous)
        if self._previous is None:
            _state.spent = 0

    def __exit__(self, *exc: object) -> None:
        _state.deadline = self._previous
        if self._previous is None:
            _state.spent = self._spent


def past_deadline() -> bool:
    """True once this thread's render is past its deadline (never outside a render)."""
    deadline: float | None = getattr(_state, "deadline", None)
    return deadline is not None and time.monotonic() > deadline


def spend(size: int) -> bool:
    """Count ``size`` characters computed against this render's :data:`WORK_LIMIT`;
    False once it is spent (always True outside a render: compiling folds constants)."""
    if getattr(_state, "deadline", None) is None:
        return True
    spent: int = getattr(_state, "spent", 0) + size
    _state.spent = spent
    return spent <= WORK_LIMIT


def render_bounded(template: Any, context: Any, security_error: type[Exception]) -> str:
    """Render ``template`` (a Jinja2 one) within :data:`OUTPUT_LIMIT` and this thread's
    deadline, chunk by chunk, so a long output stops as soon as it passes the limit."""
    parts: list[str] = []
    size = 0
    deadline: float | None = getattr(_state, "deadline", None)
    for chunk in template.generate(context):
        size += len(chunk)
        if size > OUTPUT_LIMIT:
            raise security_error(f"the output would be longer than {OUTPUT_LIMIT} characters")
        if deadline is not None and time.monotonic() > deadline:
            late()
            raise security_error(f"the template took over {RENDER_TIMEOUT:g}s to render")
        parts.append(chunk)
    return "".join(parts)


#: seconds a render may take on the event loop before it is done again in a thread
INLINE_BUDGET = 0.02


class OutOfTime(BaseException):  # noqa: N818 - a signal, not an error: no ``except Exception``
    """An inline render passed :data:`INLINE_BUDGET`: it is done again off the loop."""


def late() -> None:
    """The deadline has passed: in an inline attempt, hand the render to a thread."""
    if getattr(_state, "inline", False):
        raise OutOfTime


async def rendered(function: Callable[[], T]) -> T:
    """``function()`` (a render): first on the event loop, within :data:`INLINE_BUDGET`
    seconds, which nearly every template keeps to at no cost; one that takes longer is
    stopped at its next deadline check and rendered again in a render thread
    (:func:`in_thread`), so a slow template holds the loop up for the budget at most,
    give or take one step that reaches no check."""
    _state.inline = True
    try:
        with rendering(INLINE_BUDGET):
            return function()
    except OutOfTime:
        pass
    finally:
        _state.inline = False
    return await in_thread(function)


class _Workers:
    """Daemon threads that render, started as needed and kept for the next render.

    Daemons, so a render that reaches no deadline check cannot hold the interpreter's
    exit; a new thread starts whenever none is idle (up to :data:`WORKERS`), so renders
    given up as still running do not queue the next ones behind them.
    """

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0
        self._count = 0

    def submit(self, job: Callable[[], None]) -> None:
        with self._lock:
            if self._idle == 0 and self._count < WORKERS:
                self._count += 1
                name = f"pepperpy-template-render-{self._count}"
                threading.Thread(target=self._work, name=name, daemon=True).start()
        self._jobs.put(job)

    def _work(self) -> None:
        while True:
            with self._lock:
                self._idle += 1
            job = self._jobs.get()
            with self._lock:
                self._idle -= 1
            job()


#: threads rendering templates at most (renders past that wait for one to be free)
WORKERS = 32
_workers = _Workers()


def _forked() -> None:  # the child has none of the parent's threads
    global _workers
    _workers = _Workers()


os.register_at_fork(after_in_child=_forked)


async def in_thread(function: Callable[[], T]) -> T:
    """``function()`` run in a render thread, so the event loop keeps running meanwhile.

    Given up after :data:`RENDER_TIMEOUT` plus a second (``TimeoutError``), for a render
    that reaches no deadline check; its thread goes on until the render ends.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()
    context = contextvars.copy_context()

    def settle(result: T | None, error: BaseException | None) -> None:
        if future.done():  # the caller stopped waiting
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def run() -> None:
        result: T | None = None
        error: BaseException | None = None
        try:
            result = context.run(function)
        except BaseException as exc:  # handed to the caller, on its loop
            error = exc
        with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits
            loop.call_soon_threadsafe(settle, result, error)

    _workers.submit(run)
    async with asyncio.timeout(RENDER_TIMEOUT + 1.0):
        return await future
