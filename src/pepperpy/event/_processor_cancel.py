"""A processor handler's own cancellation: a failure, not a cancellation of the caller.

A handler that awaits a future someone else cancelled (a pool waiter, a client shut down,
a driver failing the futures of a lost connection) raises ``CancelledError`` although
nobody cancelled the task running it. Left as it is, that error would leave ``process``
as a cancellation: ``RetryMiddleware`` and ``DeadLetterMiddleware`` (which handle
``Exception``s) would let it through, the caller's task would end as cancelled without
anyone having cancelled it, and a store attachment would stop without a word. So it is
turned into :class:`HandlerCancelledError`, an ordinary failure of that handler, raised
from the ``CancelledError``, as the manager and the bus count it as their handler's
failure. A cancellation of the caller's task (its caller, a ``TimeoutMiddleware``
deadline, ``attachment.stop()``) still propagates at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from ._blame import handler_name
from ._errors import HandlerCancelledError
from ._event import Event

__all__ = ["HandlerCancelledError", "caller_cancelled", "handler_cancelled"]


def caller_cancelled() -> bool:
    """True when the current task is being cancelled (or there is no task to ask).

    The processor cannot afford to read the task's ``cancelling()`` count at the start
    of every ``process`` call (on CPython 3.11 ``asyncio.current_task()`` costs about
    half of a one-handler ``process``), so it decides without that baseline: with no
    cancellation of the task under way, a ``CancelledError`` cannot be the caller's; with
    one under way, it is taken for the caller's, on the safe side (a cancellation is
    never swallowed). That errs only for a ``process`` call made while its task is
    already being cancelled (in a ``finally:``), and a manager or a bus the processor is
    attached to decides again, with the count they took when the delivery began.
    """
    task = asyncio.current_task()
    return task is None or task.cancelling() > 0


def handler_cancelled(
    handler: Callable[..., Any], event: Event, exc: BaseException
) -> HandlerCancelledError:
    """The failure ``handler``'s own cancellation ``exc`` stands for (not raised yet)."""
    failure = HandlerCancelledError(
        f"handler {handler_name(handler)} was cancelled while handling {event.type} "
        f"({event.id}): something it awaited was cancelled, while nothing cancelled "
        "the processor's caller"
    )
    failure.__cause__ = exc
    return failure


def stray_cancellation(what: str, exc: BaseException) -> HandlerCancelledError:
    """The failure a ``CancelledError`` that did not cancel an attachment's task stands for."""
    failure = HandlerCancelledError(
        f"{what} raised CancelledError, though nothing cancelled the attachment"
    )
    failure.__cause__ = exc
    return failure
