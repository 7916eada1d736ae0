"""Letting a kept exception go of the variables its traceback's frames hold."""

from __future__ import annotations

import dis
import inspect
from types import FrameType, TracebackType

__all__ = ["release_locals"]

_RESUMABLE = (
    inspect.CO_GENERATOR
    | inspect.CO_COROUTINE
    | inspect.CO_ASYNC_GENERATOR
    | inspect.CO_ITERABLE_COROUTINE
)
_YIELD_VALUE = dis.opmap["YIELD_VALUE"]


def release_locals(exc: BaseException) -> None:
    """Free the local variables of the finished frames in ``exc``'s traceback.

    A kept failure (a manager's ``dead_letters``) held its exception, the exception its
    traceback, and the traceback every frame it passed through with its variables:
    whatever the handler had in hand when it failed (a download, a page of rows). A 1 MB
    local made the default 1,000 letters hold 1 GB. Call it once the log and the
    callbacks have seen the whole exception: the traceback stays (file, line, function),
    only the finished frames' variables go. Followed through ``__cause__`` and the
    members of an ``ExceptionGroup``, not ``__context__``, which may be an exception of
    the caller's. Frames still running or suspended are left (:func:`_finished`).
    """
    seen: set[int] = set()
    pending = [exc]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        tb: TracebackType | None = current.__traceback__
        while tb is not None:
            if _finished(tb.tb_frame, tb.tb_lasti):
                try:
                    tb.tb_frame.clear()
                except RuntimeError:  # executing: the emit, say, that caught the error
                    pass
            tb = tb.tb_next
        if current.__cause__ is not None:
            pending.append(current.__cause__)
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)


def _finished(frame: FrameType, lasti: int) -> bool:
    """Whether clearing ``frame`` is safe: not the frame of a suspended coroutine.

    ``traceback.clear_frames`` would not do: on CPython before 3.13, ``frame.clear()``
    on the frame of a *suspended* coroutine or generator closes it. A traceback holds
    such frames: the emit (or a library's reader loop) that caught the exception and
    went on to await something else. A suspended one always stands at a ``YIELD_VALUE``;
    a frame the exception left stands where the exception passed (``tb_lasti``). Any
    other state (a frame that ran on after catching it) is left alone: safe, if not freed.
    A plain function's frame is finished or running (``clear()`` refuses it then).
    """
    if not frame.f_code.co_flags & _RESUMABLE:
        return True
    at = frame.f_lasti
    return at == lasti and at >= 0 and frame.f_code.co_code[at] != _YIELD_VALUE
