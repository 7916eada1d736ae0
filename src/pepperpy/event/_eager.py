"""Starting a handler in a Task of its own, eagerly where CPython does that correctly.

A handler runs "as if in a Task of its own": ``asyncio.current_task()``, ``asyncio.timeout``
and ``TaskGroup`` inside it concern the handler, and it gets its own copy of the context.
A plain ``create_task`` gives that, but the handler's first step waits for the next loop
iteration, and a handler that never suspends still pays for the round trip (about 4 us a
handler on a 2-core machine, against 0.5 us for the call itself).

CPython 3.12 added eager tasks (``Task(..., eager_start=True)``): the task object is made,
becomes the current task, and runs its first step at once; a handler that finishes
without suspending is done when :func:`start_task` returns, and nothing is scheduled.
CPython 3.11 has no such thing, and no correct way to build one (the current task cannot be
a Task that does not exist yet), so there the Task starts on the next iteration as before.

Only :class:`~pepperpy.event.EventManager` starts handlers this way. Bus deliveries keep
``create_task`` (:func:`._handlers.start`): a delivery's first step would run before the
transport has recorded its task, so a handler publishing with its own partition key on the
memory transport could overtake the delivery it was published from; on the brokers the
network round trip dwarfs what eager start saves.

A loop with a task factory of its own (tracing, uvloop's or a user's) keeps it: such a
loop gets ``loop.create_task``, never a Task built behind the factory's back.

A first step that raises ``KeyboardInterrupt`` or ``SystemExit`` makes the Task constructor
raise it (asyncio re-raises those two) after setting it as the Task's exception: the Task,
which the constructor never returned, is freed at once, and its finalizer reports
"Task exception was never retrieved" before :func:`start_task`'s caller sees the
interrupt. Nothing that runs after the constructor can prevent that, and keeping hold of
every Task through its start (``Task.__new__`` then ``__init__``) costs each eager start
more than a tenth of a microsecond. :func:`_unread_interrupt` drops that one report
instead: a filter on the ``asyncio`` logger that only ever runs when asyncio logs an
error, so the normal path pays nothing.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Coroutine
from contextvars import Context
from types import FrameType
from typing import Any

__all__ = ["EAGER_TASKS", "starts_eagerly", "start_task"]

#: whether this Python can start a Task eagerly (CPython 3.12 and newer)
EAGER_TASKS = sys.version_info >= (3, 12)


def starts_eagerly(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether :func:`start_task` runs a coroutine's first step before returning."""
    return EAGER_TASKS and loop.get_task_factory() is None


def start_task(
    loop: asyncio.AbstractEventLoop,
    coro: Coroutine[Any, Any, Any],
    eager: bool,
    context: Context | None = None,
) -> asyncio.Task[Any]:
    """A Task running ``coro``; ``eager`` (:func:`starts_eagerly` of ``loop``, asked once
    per dispatch): its first step already taken."""
    if eager:
        return asyncio.Task(coro, loop=loop, context=context, eager_start=True)  # type: ignore[call-arg,unused-ignore]
    if context is not None:
        # not create_task(coro, context=...): a task factory written as (loop, coro), as
        # asyncio documented it before 3.11 and tracing libraries still have it, refuses
        # the keyword; a Task made in ``context`` runs in a copy of it, which is the same
        # to the handler (nothing else uses ``context`` after it)
        return context.run(loop.create_task, coro)
    return loop.create_task(coro)


#: modules whose frames lie between the Task constructor in :func:`start_task` and the
#: filter below when the loop's default exception handler logs the freed Task's exception
_REPORTERS = frozenset({"asyncio.base_events", "logging"})


def _unread_interrupt(record: logging.LogRecord) -> bool:
    """False (drop it) for asyncio's "Task exception was never retrieved" about a Task that
    :func:`start_task` was making, whose eager first step raised ``KeyboardInterrupt`` or
    ``SystemExit``: the constructor raised it on to the dispatch, which propagates it out of
    ``emit``, so the report is a false alarm about an exception that is not lost.

    Told apart by the stack: the report is made while :func:`start_task` is still inside
    the constructor call, with only the loop's exception handler and ``logging`` between
    the two (a report made from the handler's own code, inside its first step, has the
    handler's frame there instead, and is kept). A custom ``loop.set_exception_handler``
    is called before any logging happens and still receives the report.
    """
    info = record.exc_info
    if not info or not isinstance(info[1], (KeyboardInterrupt, SystemExit)):
        return True
    if not isinstance(record.msg, str) or not record.msg.startswith(
        "Task exception was never retrieved"
    ):
        return True
    inner = None
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        if frame.f_code is start_task.__code__:
            return inner is None or inner.f_globals.get("__name__") not in _REPORTERS
        inner = frame
        frame = frame.f_back
    return True


if EAGER_TASKS:
    logging.getLogger("asyncio").addFilter(_unread_interrupt)
