"""Telling a task's own cancellation from a ``CancelledError`` that is not its own.

``Task.cancelling()`` counts the cancellations of a task under way; the task keeps
counting one it was already told of while it cleans up after it (``finally:``, ``except
CancelledError:``, an ``async with`` exit). A call that may run there takes the count when
it begins (:func:`cancelling`) and compares against it later: only a cancellation that
came after that baseline is the caller's own. A ``CancelledError`` with no new
cancellation of the current task came out of something else (a handler awaited a future
someone cancelled, a driver failed the futures of a lost connection with it).

One copy for the whole library: the manager, the bus, the processor, the transports and
the PostgreSQL store import these.
"""

from __future__ import annotations

import asyncio

__all__ = ["cancelled_by_caller", "cancelling", "resume_cancellation"]


def cancelling() -> int:
    """How many cancellations of the current task are under way (0 outside a task).

    A call made in a caller's task records it at its start, as the baseline for
    :func:`cancelled_by_caller` and :func:`resume_cancellation`.
    """
    task = asyncio.current_task()
    return 0 if task is None else task.cancelling()


def cancelled_by_caller(since: int = 0) -> bool:
    """True when the current task itself is being cancelled (its caller, a timeout).

    ``since`` is the task's :func:`cancelling` count when the call began: only a
    cancellation that came after it counts. A call that may run in a caller's task must
    pass it; a background loop of the library's own (never cancelled before it starts,
    never uncancelling itself) leaves it at 0.
    """
    task = asyncio.current_task()
    return task is not None and task.cancelling() > since


def resume_cancellation(since: int = 0) -> None:
    """Raise ``CancelledError`` if the current task was cancelled and a call swallowed it.

    A driver call (``asyncio.wait_for`` on CPython 3.11, nats-py's ``_flush_pending``) or
    a user's handler may catch a cancellation and return; only ``Task.cancelling()``
    remembers it then. A long-running loop calls this between its steps, so a cancelled
    task ends as cancelled instead of going on for ever (``close()`` and ``asyncio.run()``
    cancel such tasks and wait for them).
    """
    if cancelled_by_caller(since):
        raise asyncio.CancelledError
