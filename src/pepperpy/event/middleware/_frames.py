"""Letting go of what a kept exception's frames hold (``DeadLetterMiddleware``)."""

from __future__ import annotations

import contextlib
import dis
import inspect
import types

__all__ = ["release_locals"]


def release_locals(exc: BaseException) -> None:
    """Free the local variables of the finished frames in ``exc``'s traceback.

    A kept letter's exception held every frame it passed through, and so whatever the
    handler had in hand when it failed (a downloaded file, a page of rows): a 1 MB local
    made 1,000 letters (the default ``maxlen``) hold 1 GB. Logging and the callbacks
    have seen the whole exception by now; the traceback stays (file, line, function),
    only the frames' variables go. Followed through ``__cause__`` and the members of an
    ``ExceptionGroup``, not ``__context__``, which may be an exception of the caller's.
    A frame still running (where the error was caught) cannot be cleared and is left,
    and so is a paused one (below).
    """
    seen: set[int] = set()
    pending = [exc]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        tb = current.__traceback__
        while tb is not None:
            frame = tb.tb_frame
            if not _paused(frame):
                with contextlib.suppress(RuntimeError):  # a running frame
                    frame.clear()
            tb = tb.tb_next
        if current.__cause__ is not None:
            pending.append(current.__cause__)
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)


_GENERATOR_FLAGS = (
    inspect.CO_GENERATOR
    | inspect.CO_COROUTINE
    | inspect.CO_ASYNC_GENERATOR
    | inspect.CO_ITERABLE_COROUTINE
)
_YIELD_VALUE = dis.opmap["YIELD_VALUE"]


def _paused(frame: types.FrameType) -> bool:
    """True for the frame of a generator or coroutine paused at a ``yield``/``await``.

    One exception object raised in two places (a module-level instance raised again)
    carries the frames of both: the other task's may be paused in its ``except`` block.
    Before Python 3.13, clearing such a frame closes its coroutine, which would end that
    task; 3.13 refuses with RuntimeError. A frame not started yet counts as paused.
    """
    code = frame.f_code
    if not code.co_flags & _GENERATOR_FLAGS:
        return False
    lasti = frame.f_lasti
    if lasti < 0:
        return True
    raw = code.co_code
    return lasti < len(raw) and raw[lasti] == _YIELD_VALUE
