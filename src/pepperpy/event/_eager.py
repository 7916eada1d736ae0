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
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from contextvars import Context
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
