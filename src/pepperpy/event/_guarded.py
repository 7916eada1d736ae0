"""Running an error path's own calls (``on_error`` callbacks, a dead letter's republish)
so that one failing call neither stops the others nor fails the event.

A callback or a publish that awaits a future someone else cancelled (an error tracker's
client being shut down, a pool waiter) raises ``CancelledError`` although nothing
cancelled the task running it. Caught as an ``Exception`` only, that error skipped the
callbacks after it and the republish, and left the manager's ``emit`` or the processor's
``process`` as a cancellation nobody asked for (a store attachment stopped on it). Here it
is logged as the call's failure, like any other; a cancellation of the task itself that
came after ``since`` (see :mod:`._cancel`) still propagates at once.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from typing import Any

from ._cancel import cancelled_by_caller

__all__ = ["guarded"]


async def guarded(
    call: Callable[[], Any],
    since: int,
    log: logging.Logger,
    failure: str,
    *args: Any,
    awaits: bool = False,
) -> None:
    """Run ``call()`` and await what it returns if it is awaitable (always, ``awaits``).

    An ``Exception`` it raises is logged with ``log.exception(failure, *args)``, and so is
    a ``CancelledError`` that did not cancel the current task (its ``cancelling()`` count
    is not above ``since``, the count taken when the error path began). A cancellation of
    the task propagates.
    """
    try:
        result = call()
        if awaits or (result is not None and inspect.isawaitable(result)):
            await result
    except Exception:
        log.exception(failure, *args)
    except asyncio.CancelledError:
        if cancelled_by_caller(since):
            raise
        log.exception(
            failure + " (CancelledError: something it awaited was cancelled, while "
            "nothing cancelled the task running it)",
            *args,
        )
