"""Working around nats-py's client: closing one whose connection broke, and the socket
of a reconnect attempt that failed.

nats-py leaves both half done (a ``close()`` that stops at the first error, a socket
replaced without being closed); these finish the job through its internals, as it has
no public way to.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from ..base import quietly

if TYPE_CHECKING:
    from nats.aio.client import Client

__all__ = ["close_client", "drop_attempt"]

logger = logging.getLogger("pepperpy.event.transports.nats")


def drop_attempt(nc: Client) -> None:
    """Close the socket of a reconnect attempt that failed.

    nats-py connects the next attempt through the same transport object, replacing the
    socket without closing it: one that connected and then got no answer (a server that
    hangs) stayed open until garbage-collected, with a ResourceWarning.
    """
    transport = getattr(nc, "_transport", None)
    if transport is not None and not nc.is_connected:
        with contextlib.suppress(Exception):
            transport.close()


async def close_client(nc: Client, deadline: float) -> None:
    """Close a nats-py client for good, also when its connection is broken.

    ``Client.close()`` first writes out what it buffered while reconnecting; on a socket
    the server reset, that raises, and close() stops half-way, leaving its subscription
    tasks running and the socket open (a later close() returns at once, as the client
    counts as closed). So this finishes the job where close() gave up. It never raises
    (only the caller's own cancellation propagates) and waits at most until ``deadline``.
    """
    completed = await quietly(nc.close(), "closing the NATS connection", logger, deadline=deadline)
    if completed:
        return
    # nats-py has no public way to finish a close that failed: use its internals
    subscriptions = getattr(nc, "_subs", {})
    tasks = [getattr(sub, "_wait_for_msgs_task", None) for sub in subscriptions.values()]
    subscriptions.clear()
    pending = [task for task in tasks if task is not None and not task.done()]
    for task in pending:
        task.cancel()
    for name in ("_reading_task", "_ping_interval_task", "_flusher_task", "_reconnection_task"):
        task = getattr(nc, name, None)
        if task is not None and not task.done():
            task.cancel()
            pending.append(task)
    transport = getattr(nc, "_transport", None)
    if transport is not None:
        with contextlib.suppress(Exception):
            transport.close()
    if pending:
        await asyncio.wait(pending, timeout=1.0)
