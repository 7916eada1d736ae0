"""Bounds on what a notification template may compute: size and time.

Jinja2's sandbox keeps templates away from Python internals and caps ``range``, but
``*``, ``**`` and ``%`` run as they are: ``{{ 9 ** 9999999 }}`` computes for seconds
and ``{{ 'a' * 10**9 }}`` allocates a gigabyte, and the operands may come from event
data. The environment made here refuses such work before it starts, with Jinja2's
``SecurityError``:

* ``**`` whose integer result would pass :data:`INT_BITS` bits;
* ``*`` repeating a string, list or tuple past :data:`OUTPUT_LIMIT` characters or items;
* ``%`` formatting with a field width or precision past :data:`OUTPUT_LIMIT`;
* str methods (``center``, ``ljust``, ``zfill``, ``replace`` ...) and the filters built
  on them (``center``, ``indent``, ``format``, ``replace``) asked to grow a string past
  :data:`OUTPUT_LIMIT`, and any value read or computed that is already longer;
* output past :data:`OUTPUT_LIMIT` characters per part;
* a render still running after :data:`RENDER_TIMEOUT` seconds: the deadline is checked
  at every attribute or item read, call, intercepted operator, loop step over
  ``range`` and output chunk, which is where a template spends its time.

What this does not bound: a template's own source can still build a large value out of
operations that touch none of those points (``{% set s = s ~ s %}`` written out fifty
times). Templates are the application's code; the bounds are there for the values that
reach them.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
import queue
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

__all__ = [
    "INT_BITS",
    "OUTPUT_LIMIT",
    "RENDER_TIMEOUT",
    "bounded_environment",
    "INLINE_BUDGET",
    "OutOfTime",
    "in_thread",
    "render_bounded",
    "rendered",
    "rendering",
]

#: characters a rendered part, or a string, list or tuple a template computes, may have
OUTPUT_LIMIT = 1_000_000
#: bits an integer a template computes with ``**`` may have (about 4900 decimal digits)
INT_BITS = 16_384
#: seconds one template part may take to render
RENDER_TIMEOUT = 5.0

#: str methods whose result can be much longer than the string
_GROWING = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs", "replace", "join"})
#: a width or precision in a ``%`` or ``format`` spec, with enough digits to matter
_WIDE = re.compile(r"\d{7,}")

T = TypeVar("T")

_state = threading.local()


class rendering:  # noqa: N801 - a context manager used like a function
    """Within it, this thread's renders stop at ``time.monotonic() + timeout``."""

    __slots__ = ("_previous", "_timeout")

    def __init__(self, timeout: float | None = None) -> None:
        self._timeout = RENDER_TIMEOUT if timeout is None else timeout
        self._previous: float | None = None

    def __enter__(self) -> None:
        self._previous = getattr(_state, "deadline", None)
        deadline = time.monotonic() + self._timeout
        # nested (a render inside an inline attempt): the earlier deadline holds
        _state.deadline = deadline if self._previous is None else min(deadline, self._previous)

    def __exit__(self, *exc: object) -> None:
        _state.deadline = self._previous


class _Range:
    """A ``range`` whose iteration checks the render's deadline at every step."""

    __slots__ = ("_check", "_range")

    def __init__(self, numbers: range, check: Callable[[], None]) -> None:
        self._range = numbers
        self._check = check

    def __iter__(self) -> Iterator[int]:
        for number in self._range:
            self._check()
            yield number

    def __reversed__(self) -> Iterator[int]:
        for number in reversed(self._range):
            self._check()
            yield number

    def __len__(self) -> int:
        return len(self._range)

    def __contains__(self, value: object) -> bool:
        return value in self._range

    def __getitem__(self, index: Any) -> Any:
        return self._range[index]

    def __repr__(self) -> str:
        return repr(self._range)


def _sized(value: Any) -> int:
    if isinstance(value, str | list | tuple | bytes):
        return len(value)
    return 0


def bounded_environment(sandbox: Any) -> type[Any]:
    """The sandboxed environment class with these bounds, built on ``sandbox``
    (the ``jinja2.sandbox`` module, imported by the caller: Jinja2 is optional)."""
    cached: type[Any] | None = getattr(sandbox, "_pepperpy_bounded", None)
    if cached is not None:
        return cached
    security_error: type[Exception] = sandbox.SecurityError
    base: type[Any] = sandbox.SandboxedEnvironment

    def refuse(message: str) -> None:
        raise security_error(message)

    def on_time() -> None:
        deadline: float | None = getattr(_state, "deadline", None)
        if deadline is not None and time.monotonic() > deadline:
            late()
            refuse(f"the template took over {RENDER_TIMEOUT:g}s to render")

    def check_size(value: Any, what: str) -> Any:
        if _sized(value) > OUTPUT_LIMIT:
            refuse(f"{what} would be longer than {OUTPUT_LIMIT} characters or items")
        return value

    def check_spec(spec: Any, what: str) -> None:
        if isinstance(spec, str) and (_WIDE.search(spec) or "*" in spec and what == "%"):
            refuse(f"a {what} format with a width over {OUTPUT_LIMIT - 1} (or '*') is refused")

    def bounded_range(*args: int) -> _Range:
        return _Range(sandbox.safe_range(*args), on_time)

    def grows(name: str, text: str, args: tuple[Any, ...]) -> int:
        """A bound on the length of ``text.<name>(*args)``."""
        if name == "replace" and len(args) >= 2:
            old, new = args[0], args[1]
            if isinstance(old, str) and isinstance(new, str):
                count = len(text) + 1 if old == "" else text.count(old)
                return len(text) + count * len(new)
        if name == "join" and args:
            return 0  # bounded by its argument, checked once built
        widths = [arg for arg in args if isinstance(arg, int)]
        return max([len(text), *widths]) * (8 if name == "expandtabs" else 1)

    class BoundedSandboxedEnvironment(base):  # type: ignore[misc]
        """``SandboxedEnvironment`` that refuses work past the bounds of this module."""

        intercepted_binops = frozenset({"*", "**", "%"})

        def __init__(self, **options: Any) -> None:
            super().__init__(finalize=self._finalize, **options)
            self.globals["range"] = bounded_range
            for name in ("center", "indent", "format", "replace"):
                self.filters[name] = self._bounded_filter(self.filters[name], name)

        @staticmethod
        def _finalize(value: Any) -> Any:
            on_time()
            return check_size(value, "an output value")

        @staticmethod
        def _bounded_filter(function: Callable[..., Any], name: str) -> Callable[..., Any]:
            def bounded(*args: Any, **kwargs: Any) -> Any:
                on_time()
                texts = [value for value in args if isinstance(value, str)]
                widths = [v for v in (*args, *kwargs.values()) if isinstance(v, int)]
                text = texts[0] if texts else ""
                if name == "format":
                    check_spec(text, "%")
                elif name == "replace" and len(texts) >= 3:
                    size = grows("replace", text, tuple(texts[1:3]))
                    if size > OUTPUT_LIMIT:
                        refuse(f"the replace filter would give over {OUTPUT_LIMIT} characters")
                elif name == "indent":
                    lines = text.count("\n") + 1
                    if len(text) + lines * max([0, *widths]) > OUTPUT_LIMIT:
                        refuse(f"the indent filter would give over {OUTPUT_LIMIT} characters")
                elif any(width > OUTPUT_LIMIT for width in widths):
                    refuse(f"the {name} filter's width is over {OUTPUT_LIMIT}")
                return check_size(function(*args, **kwargs), f"the {name} filter's result")

            if hasattr(function, "jinja_pass_arg"):  # it takes the eval context first
                bounded.jinja_pass_arg = function.jinja_pass_arg  # type: ignore[attr-defined]
            return bounded

        def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
            on_time()
            if operator == "**":
                if isinstance(left, int) and isinstance(right, int) and right > 0:
                    bits = max(left.bit_length(), 1) * right
                    if abs(left) > 1 and bits > INT_BITS:
                        refuse(f"{left} ** {right} would have over {INT_BITS} bits")
            elif operator == "*":
                for sequence, count in ((left, right), (right, left)):
                    if isinstance(count, int) and _sized(sequence) * count > OUTPUT_LIMIT:
                        kind = type(sequence).__name__
                        refuse(
                            f"repeating a {kind} of {_sized(sequence)} {count} times would "
                            f"give over {OUTPUT_LIMIT} characters or items"
                        )
            elif operator == "%" and isinstance(left, str):
                check_spec(left, "%")
            result = super().call_binop(context, operator, left, right)
            if isinstance(result, int) and result.bit_length() > INT_BITS:
                refuse(f"the result of {operator} has over {INT_BITS} bits")
            return check_size(result, f"the result of {operator}")

        def wrap_str_format(self, value: Any) -> Any:
            wrapped = super().wrap_str_format(value)
            if wrapped is not None:  # str.format or format_map, of this str
                check_spec(value.__self__, "format")
            return wrapped

        def getattr(self, obj: Any, attribute: str) -> Any:
            on_time()
            return check_size(super().getattr(obj, attribute), f"attribute {attribute!r}")

        def getitem(self, obj: Any, argument: Any) -> Any:
            on_time()
            return check_size(super().getitem(obj, argument), "an item")

        def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
            on_time()
            owner = getattr(__obj, "__self__", None)
            name = getattr(__obj, "__name__", "")
            if isinstance(owner, str):
                if name in ("format", "format_map"):
                    check_spec(owner, "format")
                elif name in _GROWING and grows(name, owner, args) > OUTPUT_LIMIT:
                    refuse(f"str.{name}() would be longer than {OUTPUT_LIMIT} characters")
            result = super().call(__context, __obj, *args, **kwargs)
            return check_size(result, f"the result of {name or 'a call'}()")

    BoundedSandboxedEnvironment.__module__ = __name__
    sandbox._pepperpy_bounded = BoundedSandboxedEnvironment
    return BoundedSandboxedEnvironment


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
