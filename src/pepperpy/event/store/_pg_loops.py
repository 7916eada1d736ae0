"""What a PostgreSQL store holds on each event loop using it, and the committer running there.

Each loop gets a share of its own (:class:`OnLoop`): a pool, a committer, a listener,
waiters. The committer (:func:`commit_loop`) writes the loop's queued appends in groups
and, once the store is closed, closes the loop's connections. Background tasks hold the
store's :class:`Status`, never the store, so a store dropped without ``close()`` is
collected, and :func:`dropped` closes what it left open.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

from .._errors import ClosedError
from .._loops import LoopShares, warn_dropped
from ._pg_connect import Openings
from .base import MultiAppend, PendingAppend, settle

__all__ = ["CommitJobs", "Job", "OnLoop", "Status", "commit_loop", "dropped", "listener_ended"]

logger = logging.getLogger("pepperpy.event.store")

#: most appends committed in one transaction
_MAX_GROUP = 512

#: one caller's append (or appends to several streams, all or none) waiting for its group
#: commit, and the future it waits on
Job = tuple[PendingAppend | MultiAppend, "asyncio.Future[Any]"]


class OnLoop:
    """What a store holds on one event loop.

    asyncpg connections, futures and asyncio events work on the loop that made them only,
    so every loop using a store gets its own pool, committer, listener and waiters: to
    the database it is one more client, and ordering between clients is the database's
    (the ``pepperpy_head`` lock). A second ``asyncio.run``, or loops in other threads,
    thus use the store as the first loop did.
    """

    __slots__ = (
        "aborted",
        "changed",
        "committer",
        "connected",
        "deadline",
        "grace",
        "listener",
        "listening",
        "loop",
        "missed",
        "openings",
        "pending",
        "pool",
        "ready",
        "work",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.pool: Any = None
        self.ready: asyncio.Future[Any] | None = None
        self.pending: list[Job] = []
        self.work = asyncio.Event()
        self.committer: asyncio.Task[None] | None = None
        self.listener: Any = None
        self.listening: asyncio.Task[None] | None = None
        self.changed: asyncio.Event | None = None
        self.connected = False
        #: news came (a notification, a reconnect) since a ``wait`` last read the head: a
        #: caller between its read and its wait may not have seen it, whether or not other
        #: callers were waiting (they are woken; this one was reading)
        self.missed = False
        #: why the connections were cut off on close (``abort``), once they were
        self.aborted: str | None = None
        #: the timer that aborts a close taking too long
        self.deadline: asyncio.TimerHandle | None = None
        #: the timer that abandons connections still being opened on close
        self.grace: asyncio.TimerHandle | None = None
        #: connections being opened (see :func:`~._pg_connect.shielded_connect`)
        self.openings = Openings()

    def wake(self) -> None:
        """Let every ``wait`` on this loop return (callers read again)."""
        changed = self.changed
        if changed is not None:
            self.changed = None
            changed.set()

    def notified(self) -> None:
        """News came (see :attr:`missed`): wake every ``wait``, and remember it for the
        callers not waiting now (reading, or reading the head in ``wait``). Only a
        wake-up: a notification's payload is never taken as the head (a channel earlier
        versions named may be shared by other stores)."""
        self.missed = True
        self.wake()

    def stop(self, bound: float) -> None:
        """On close: wake the waiters, and the committer, which closes the connections.

        If that takes more than ``bound`` seconds (queued appends or calls holding a
        connection wait on a server that does not answer), :meth:`abort` cuts everything
        off. Connections still being opened are waited for ``OPENING_GRACE`` seconds at
        most (an append queued before ``close`` may need one), then abandoned
        (:meth:`Openings.abandon`): their callers fail with :class:`ClosedError`.
        """
        self.wake()
        self.work.set()
        if self.deadline is None:
            reason = f"close() gave up waiting for PostgreSQL after {bound:g} s"
            self.deadline = self.loop.call_later(bound, self.abort, reason)
        if self.grace is None:
            self.grace = self.openings.abandon_later(self.loop, bound)

    def stop_from_elsewhere(self, bound: float) -> bool:
        """:meth:`stop` asked of this share's loop from any thread (its committer closes
        the connections there); False when that loop no longer runs."""
        try:
            self.loop.call_soon_threadsafe(self.stop, bound)
            return self.loop.is_running()
        except RuntimeError:  # that loop is closed
            return False

    def abort(self, reason: str) -> None:
        """Stop waiting for the server, on the loop itself: cut every connection off.

        Appends still queued were not written and fail with :class:`ClosedError`; the
        group being written fails as its connection goes (``Pools.run`` says
        whether it may have been committed). An open under way is cancelled.
        """
        if self.aborted is not None:
            return
        self.aborted = reason
        pending, self.pending = self.pending, []
        for _, future in pending:
            settle(
                future,
                ClosedError(
                    f"the event store was closed ({reason}) before this append was "
                    "written: nothing was written"
                ),
            )
        if self.ready is not None and not self.ready.done():
            self.ready.cancel()
        self.openings.abandon(reason)
        for resource in (self.listener, self.pool):
            if resource is not None:
                with contextlib.suppress(Exception):
                    resource.terminate()
        self.wake()
        self.work.set()

    def abandon(self) -> None:
        """Drop everything at once, from outside the loop (closed or about to be).

        Best effort: on a closed loop nothing can be scheduled any more.
        """
        for task in (self.committer, self.listening, *self.openings):
            if task is not None and task is not _current_task(self.loop):
                with contextlib.suppress(RuntimeError):
                    task.cancel()
        for _, future in self.pending:
            with contextlib.suppress(RuntimeError):
                future.cancel()
        self.pending = []
        for resource in (self.pool, self.listener):
            if resource is not None:
                with contextlib.suppress(RuntimeError):
                    resource.terminate()
        self.pool = self.ready = self.listener = None
        self.connected = False


class Status:
    """What a store's background tasks (committers, listeners) need to know of it.

    They hold this, never the backend: a backend dropped without ``close()`` is then
    collected, and its finalizer (:func:`dropped`) stops them as ``close()`` would.
    """

    __slots__ = ("closed", "head", "used")

    def __init__(self) -> None:
        self.closed = False
        #: next global position, as read from the tables (the least it can be)
        self.head = 0
        #: some loop has used the store (it may hold connections there)
        self.used = False


def dropped(loops: LoopShares[OnLoop], status: Status, where: str, bound: float) -> None:
    """A backend was collected without ``close()``: close its connections, and say so.

    This runs wherever the garbage collector runs, so it only asks each loop's committer
    to close that loop's connections, as ``close()`` does (bounded by ``bound``; every
    append acknowledged was committed first); on a loop that no longer runs they are
    cut off at once. A store that was never used holds nothing, and is not warned about.
    """
    if status.closed:
        return
    status.closed = True
    for on in loops.values():  # no lock: this may run inside code that holds it
        if not on.stop_from_elsewhere(bound):
            on.abandon()
    if status.used:
        # last: with warnings turned into errors this raises, after the release began
        warn_dropped(f"EventStore on PostgreSQL {where}", "")


#: a store's group commit: write these jobs, in one transaction if it can, and answer
#: each one's caller
CommitJobs = Callable[[OnLoop, list[Job]], Awaitable[None]]


async def commit_loop(
    commit: weakref.WeakMethod[CommitJobs],
    on: OnLoop,
    status: Status,
    loops: LoopShares[OnLoop],
    errors: tuple[type[Exception], ...],
) -> None:
    """Commit the loop's queued appends in groups, one transaction per group.

    Once the store is closed and nothing is queued, it closes the loop's connections
    and ends. It is cancelled only when its loop shuts down (``asyncio.run`` cancels
    the tasks left behind): then it drops the loop's connections, while the loop can
    still close them, and a later loop starts afresh.

    ``on.work`` only wakes the loop; what to do is decided from the state (the queue
    and ``status.closed``), read after every group. The event is cleared just before
    the wait, once that state says there is nothing to do, and never while a group is
    written: a stop (or an append) signalled meanwhile is then never lost.

    It holds the backend (``commit`` is its bound method) only while it commits a group,
    so a backend dropped without ``close()`` is collected while this waits, and its
    finalizer stops it (:func:`dropped`).
    """
    try:
        while True:
            if not on.pending:
                if status.closed or commit() is None:
                    break
                on.work.clear()
                await on.work.wait()
                continue
            group, on.pending = on.pending[:_MAX_GROUP], on.pending[_MAX_GROUP:]
            # callers cancelled before their write started are not written
            group = [job for job in group if not job[1].cancelled()]
            if not group:
                continue
            write = commit()
            if write is None:  # dropped: its callers are gone too (they held it)
                closed = ClosedError("the event store is closed")
                for _, future in group:
                    settle(future, closed)
                continue
            await write(on, group)
            del write  # not held while waiting for the next append
    except asyncio.CancelledError:
        on.committer = None
        with loops.lock:
            loops.leave(on)
        raise
    await _close_connections(on, loops, errors)


async def _close_connections(
    on: OnLoop, loops: LoopShares[OnLoop], errors: tuple[type[Exception], ...]
) -> None:
    """Close the loop's connections gracefully (the committer's last act).

    Idle connections are closed without waiting for the server (the Terminate message
    is sent, the socket closed: the pool's ``goodbye_class``, ``terminate`` for the
    listener), so a partition costs nothing here; what waits is work under way (a
    connection lent out, one being opened). Bounded by ``on.deadline`` (see ``close``),
    which cuts everything off instead.
    """
    on.wake()
    if on.listening is not None:
        on.listening.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            try:
                await on.listening
            except Exception:  # it had failed before: say why, and close the rest
                listener_ended(on.listening, closing=True)
    if on.listener is not None:  # it holds nothing: a goodbye, no wait for the answer
        on.listener.terminate()
    # the queued appends are in: no connection being opened is needed any more (a
    # read's, the listener's, one a cancelled caller left); each ends at once
    on.openings.abandon("close() does not wait for connections being opened")
    if on.ready is not None and not on.ready.done():
        await asyncio.wait((on.ready,))  # an open in progress finishes, then closes
    if on.openings:  # cancelled above: each ends within a loop iteration or two
        await asyncio.wait(set(on.openings))
    if on.pool is not None:
        try:
            await on.pool.close()
        except errors:  # a failure closing one: cut off the rest
            on.pool.terminate()
    for timer in (on.deadline, on.grace):
        if timer is not None:
            timer.cancel()
    with loops.lock:
        loops.forget(on)


def _current_task(loop: asyncio.AbstractEventLoop) -> asyncio.Task[Any] | None:
    """The task running on ``loop`` now, if any (``None`` when it is not running)."""
    try:
        return asyncio.current_task(loop)
    except RuntimeError:
        return None


def listener_ended(task: asyncio.Future[None], *, closing: bool = False) -> None:
    """Log why a loop's LISTEN task (``_pg_listen.listen``) ended while the store was open.

    It reconnects after every connection error on its own, so it ends only by a bug (an
    exception outside the driver's errors) or a cancellation from outside the store.
    Until a new one listens, waiters fall back to re-reading every ``RECONNECT_INTERVAL``
    seconds; the store's next wait starts a new one (unless ``closing``).
    """
    then = "" if closing else "; starting a new one"
    if task.cancelled():
        logger.warning("PostgreSQL: the LISTEN task was cancelled%s", then)
        return
    error = task.exception()
    logger.error(
        "PostgreSQL: the LISTEN task failed%s",
        then,
        exc_info=None if error is None else (type(error), error, error.__traceback__),
    )
