"""What an SQLite backend holds (its writer thread, read threads and connections) and
how it is released: by ``close()``, or by the finalizer of a backend dropped without it.
Nothing here refers to the backend itself, so its threads never keep it alive.
"""

from __future__ import annotations

import sqlite3
import threading
from concurrent.futures import Future, ThreadPoolExecutor

from .._loops import warn_dropped
from ._sqlite_writer import Writer
from ._waiters import LoopWaiters

__all__ = ["Commits", "Held", "dropped", "release"]


class Commits:
    """How far this process has committed, and the tasks waiting for news of it.

    The writer thread reports each commit here (on the committing callers' loops). It
    holds no reference to the backend, so the thread does not keep a backend that was
    dropped unclosed alive: that one is collected and its finalizer stops the thread.
    """

    __slots__ = ("head", "lock", "waiters")

    def __init__(self, head: int = 0) -> None:
        self.head = head  # next global position, as far as this process has committed
        self.lock = threading.Lock()  # the writer reports commits on callers' loops
        self.waiters = LoopWaiters()

    def wake(self, head: int = 0) -> None:
        """Note a commit up to ``head`` and wake the waiters."""
        with self.lock:
            if head > self.head:
                self.head = head
        self.waiters.wake()


class Held:
    """The threads and connections a backend holds, for whoever releases them.

    That is ``close()``, or the finalizer of a backend dropped without it (see
    :func:`dropped`); nothing here refers to the backend itself.
    """

    __slots__ = ("closed", "connections", "connections_lock", "pool", "writer")

    def __init__(self) -> None:
        self.writer: Writer | None = None
        self.pool: ThreadPoolExecutor | None = None
        #: the read connections, each with the lock held while it is used
        self.connections: list[tuple[sqlite3.Connection, threading.Lock]] = []
        self.connections_lock = threading.Lock()
        #: close() began: the backend's release is under way or done
        self.closed = False


def release(
    held: Held, writer: Writer | None, pool: ThreadPoolExecutor | None, closing: Future[None]
) -> None:
    """The release of the file, in a thread of its own: wait for the writer (it writes what
    is queued first) and the read threads, then close the read connections."""
    try:
        if writer is not None:
            writer.join()
        if pool is not None:
            pool.shutdown(wait=True)
        with held.connections_lock:
            readers = list(held.connections)
        for connection, gate in readers:  # under its lock: a fork waits for the close
            with gate:
                connection.close()
        with held.connections_lock:
            held.connections.clear()
    except BaseException as exc:
        closing.set_exception(exc)
    else:
        closing.set_result(None)


def dropped(held: Held, path: str) -> None:
    """A backend was collected without ``close()``: release what it held, and say so.

    Its writer writes what it was handed and ends; the read threads end and the
    connections close, in a daemon thread, since this runs wherever the garbage
    collector happens to run (on an event loop, or in a read thread letting go of its
    last work item). Appends still batched on a loop go in if this runs on that loop,
    else they fail with ClosedError, unwritten (``Writer.stop``); only callers of the
    backend itself can have any, as ``EventStore.append`` keeps the store alive until
    answered. Every append acknowledged so far was committed before it was acknowledged.
    A backend that never opened its file holds nothing, and is not warned about.
    """
    writer, pool = held.writer, held.pool
    if held.closed or (writer is None and pool is None):
        return
    held.closed = True
    if writer is not None:
        writer.stop()
    if pool is not None:
        pool.shutdown(wait=False, cancel_futures=False)
    closing: Future[None] = Future()
    closing.set_running_or_notify_cancel()
    threading.Thread(
        target=release,
        args=(held, writer, pool, closing),
        name="pepperpy-sqlite-close",
        daemon=True,  # never holds up the interpreter's exit
    ).start()
    # last: with warnings turned into errors this raises, after the release has begun
    warn_dropped(
        f"EventStore on SQLite file {path!r}",
        "",
        "its writer thread and connections are being released now",
    )
