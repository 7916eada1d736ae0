"""How :class:`~pepperpy.event.EventManager` waits for several handlers of one event.

When several handlers match, ``_dispatch_many`` runs each as if in a Task of its own; the
helpers here wait until every one has settled (:func:`_all_settled`), run a sync handler
that must wait its turn (:func:`_call_sync`), and call off the handlers of a cancelled
emit (:func:`_cancel_all`, :func:`_cancellation`).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from typing import TYPE_CHECKING, Any

from ._blame import named

if TYPE_CHECKING:
    from ._event import Event
    from ._listeners import _Listener

__all__: list[str] = []  # private helpers of _manager, imported by name

logger = logging.getLogger("pepperpy.event")


def _cancellation(task: asyncio.Future[Any]) -> asyncio.CancelledError:
    """The CancelledError a cancelled handler task ended with."""
    try:
        task.result()
    except asyncio.CancelledError as exc:
        return exc
    return asyncio.CancelledError()


async def _cancel_all(
    loop: asyncio.AbstractEventLoop,
    event: Event,
    running: list[tuple[_Listener, asyncio.Future[Any]]],
    failed: list[tuple[_Listener, BaseException]],
    why: str = "cancelled",
) -> None:
    """Cancel a cancelled emit's handlers and wait until each has finished, cleanup included.

    Until then the emit holds its buffer slot, so ``buffer_size`` still bounds what runs.
    Cancelled again meanwhile, it keeps waiting (the handlers are cancelled already) and
    its caller re-raises the cancellation afterwards, as ``settled`` does for a save.
    Failures are logged with their traceback, neither retried nor dead-lettered: the
    emit did not finish, it was called off (``why``: cancelled, or interrupted by a
    handler's KeyboardInterrupt or SystemExit).
    """
    tasks = [task for _, task in running]
    for task in tasks:
        task.cancel()
    pending = tasks
    while pending:
        try:
            await _all_settled(loop, pending)
        except asyncio.CancelledError:
            pass
        pending = [task for task in pending if not task.done()]
    failures = list(failed)
    for listener, task in running:
        error = None if task.cancelled() else task.exception()
        if error is not None and not _raised_by_the_loop(task, error):
            failures.append((listener, error))
    for listener, error in failures:
        logger.error(
            "handler %s failed for event %s (%s) while its emit was %s; "
            "not retried or dead-lettered",
            named(listener.handler, event, error),
            event.type,
            event.id,
            why,
            exc_info=error,
        )


def _raised_by_the_loop(task: asyncio.Future[Any], error: BaseException) -> bool:
    """Whether asyncio raised ``error`` out of the event loop already: a Task ending with
    KeyboardInterrupt or SystemExit re-raises it from the loop (``asyncio.run`` then
    cancels every task, this emit included), so its caller has it. Logged here too, a
    handler's ``sys.exit()`` would read as that handler's failure, traceback and all."""
    return isinstance(error, (KeyboardInterrupt, SystemExit)) and isinstance(task, asyncio.Task)


async def _call_sync(listener: _Listener, event: Event) -> None:
    result = listener.handler(event)
    if result is not None and inspect.isawaitable(result):
        await result


async def _all_settled(loop: asyncio.AbstractEventLoop, tasks: list[asyncio.Future[Any]]) -> None:
    """Wait until every task is done, whatever its outcome (a leaner ``asyncio.wait``)."""
    waiter: asyncio.Future[None] = loop.create_future()
    left = len(tasks)

    def settled(_: asyncio.Future[Any]) -> None:
        nonlocal left
        left -= 1
        if not left and not waiter.done():
            waiter.set_result(None)

    for task in tasks:
        task.add_done_callback(settled)
    await waiter
