"""The default executor of a subcommand's event loop: threads a stopped command leaves behind.

``asyncio.to_thread`` runs blocking work (an SQLite query, ``import -`` reading stdin)
in the loop's default executor. A ``ThreadPoolExecutor``'s threads are waited for twice:
by ``asyncio.run`` as it closes the loop, and again as the interpreter exits. A thread
blocked in a read that may never end (``import -`` from a pipe whose writer is idle, a
FIFO nobody writes to) thus kept Ctrl-C and SIGTERM from stopping the command: it went
on waiting, and then failed on a cut-off file with status 1 instead of 130 or 143.

:class:`LeavingPool` runs the same work on daemon threads, and once :meth:`leave` is
called (the command was stopped: its own cleanup has run) its shutdown does not wait
for them; nor does the exit, as they are daemon threads. A command that ends on its own
waits for its threads as before.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

__all__ = ["LeavingPool"]

T = TypeVar("T")
_Work = tuple[Future[Any], Callable[..., Any], tuple[Any, ...], dict[str, Any]]


class LeavingPool(ThreadPoolExecutor):
    """A thread pool of daemon threads whose shutdown may leave them running.

    A ``ThreadPoolExecutor`` by type only (``loop.set_default_executor`` takes nothing
    else): ``submit`` and ``shutdown`` are its own, so none of the base class's threads,
    which the interpreter joins at exit, is ever started.
    """

    def __init__(self, max_workers: int | None = None) -> None:
        super().__init__(max_workers=max_workers)  # None: ThreadPoolExecutor's default
        self._most: int = self._max_workers
        self._queued: queue.SimpleQueue[_Work | None] = queue.SimpleQueue()
        self._idle_workers = threading.Semaphore(0)
        self._workers: list[threading.Thread] = []
        self._guard = threading.Lock()
        self._closed = False
        self._left = False

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        future: Future[T] = Future()
        with self._guard:
            if self._closed:
                raise RuntimeError("cannot schedule new futures after shutdown")
            self._queued.put((future, fn, args, kwargs))
            if not self._idle_workers.acquire(blocking=False) and len(self._workers) < self._most:
                worker = threading.Thread(
                    target=self._serve,
                    name=f"pepperpy-event-cli-{len(self._workers)}",
                    daemon=True,
                )
                worker.start()
                self._workers.append(worker)
        return future

    def _serve(self) -> None:
        while (work := self._queued.get()) is not None:
            future, fn, args, kwargs = work
            if future.set_running_or_notify_cancel():
                try:
                    result = fn(*args, **kwargs)
                except BaseException as exc:
                    future.set_exception(exc)
                else:
                    future.set_result(result)
            del work, future, fn, args, kwargs
            self._idle_workers.release()

    def leave(self) -> None:
        """From now on, shutting down does not wait for the threads (the command stopped)."""
        self._left = True

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._guard:
            self._closed = True
            workers = list(self._workers)
        if cancel_futures or self._left:
            while True:
                try:
                    work = self._queued.get_nowait()
                except queue.Empty:
                    break
                if work is not None:
                    work[0].cancel()
        for _ in workers:
            self._queued.put(None)
        if wait and not self._left:
            for worker in workers:
                worker.join()
