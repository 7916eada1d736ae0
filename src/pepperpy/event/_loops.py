"""State kept per event loop: asyncpg connections work only on the loop that opened them.

The PostgreSQL store and checkpoint store keep one *share* (connections, tasks) per
event loop that uses them. :class:`LoopShares` finds or makes the running loop's share
and forgets the shares of loops that closed without shutting them down.
"""

from __future__ import annotations

import asyncio
import threading
import warnings
from collections.abc import Callable, Coroutine
from typing import Any, Generic, Protocol, TypeVar

__all__ = ["LoopShares", "resolve", "settled", "wake"]


class _Share(Protocol):
    loop: asyncio.AbstractEventLoop

    def abandon(self) -> None:
        """Drop what the share holds without awaiting anything (its loop is gone)."""


S = TypeVar("S", bound=_Share)
T = TypeVar("T")


class LoopShares(Generic[S]):
    """One share per event loop, made on first use there; thread-safe with :attr:`lock`."""

    def __init__(self, make: Callable[[asyncio.AbstractEventLoop], S]) -> None:
        self._make = make
        self._shares: dict[asyncio.AbstractEventLoop, S] = {}
        #: held to change the shares (and by owners for their own bookkeeping with them)
        self.lock = threading.Lock()

    def here(self) -> S:
        """The running loop's share, made on its first use there."""
        loop = asyncio.get_running_loop()
        share = self._shares.get(loop)
        if share is None:
            with self.lock:
                # forget loops that closed without shutting their tasks down
                for gone in [other for other in self._shares.values() if other.loop.is_closed()]:
                    self.leave(gone)
                share = self._shares.setdefault(loop, self._make(loop))
        return share

    def get(self, loop: asyncio.AbstractEventLoop) -> S | None:
        return self._shares.get(loop)

    def values(self) -> list[S]:
        """Every share, one per loop."""
        return list(self._shares.values())

    def others(self, loop: asyncio.AbstractEventLoop) -> list[S]:
        """The shares of every loop but ``loop``."""
        return [share for share in self._shares.values() if share.loop is not loop]

    def forget(self, share: S) -> None:
        """Forget ``share`` if it is still its loop's (call with :attr:`lock`)."""
        if self._shares.get(share.loop) is share:
            del self._shares[share.loop]

    def leave(self, share: S) -> None:
        """Forget ``share`` and drop what it holds (call with :attr:`lock`)."""
        self.forget(share)
        share.abandon()

    def take_all(self) -> list[S]:
        """Every share, forgotten (call with :attr:`lock`)."""
        shares = list(self._shares.values())
        self._shares.clear()
        return shares


def wake(loop: asyncio.AbstractEventLoop, future: asyncio.Future[None]) -> bool:
    """Resolve ``future`` (with None) on its own ``loop``, from any thread.

    Returns False if that loop is closed: nobody can be waiting there any more.
    """
    if loop is asyncio._get_running_loop():
        resolve(future)
        return True
    try:
        loop.call_soon_threadsafe(resolve, future)
    except RuntimeError:
        return False
    return True


def resolve(future: asyncio.Future[None]) -> None:
    """Resolve ``future`` with None unless it is done already (on its own loop)."""
    if not future.done():
        future.set_result(None)


async def settled(operation: Coroutine[Any, Any, T]) -> T:
    """Run ``operation`` to its end even if the awaiting task is cancelled meanwhile.

    Meant for a write together with the bookkeeping that follows it (a checkpoint save
    and the position the next compare-and-set expects, a store write and its audit
    entry): cancelled half-way, the write might still commit unseen. Here it finishes
    and its outcome is recorded first; then the cancellation is re-raised, from the
    operation's exception if it failed (cancelled again while it waits, it goes on
    waiting). Without a cancellation, the operation's result or exception is passed on.
    """
    task = asyncio.ensure_future(operation)
    interrupted: asyncio.CancelledError | None = None
    while not task.done():
        try:
            # unlike wait_for, wait leaves the task running when the waiter is cancelled
            await asyncio.wait((task,))
        except asyncio.CancelledError as exc:
            interrupted = exc
    if interrupted is None:
        return task.result()
    failure = None if task.cancelled() else task.exception()
    raise interrupted from failure


def warn_dropped(
    owner: str,
    parent: str,
    released: str = "its connections are being closed on their event loops now",
) -> None:
    """Warn (``ResourceWarning``) that ``owner`` was collected unclosed, naming ``parent``
    (what the user made and should have closed) when it holds ``owner``, and saying what
    is ``released`` instead. Called by the finalizers that close what a dropped object
    left open (on its event loops, or in threads: the SQLite store's)."""
    what = f"{parent} was dropped while its {owner} was open" if parent else f"{owner} was dropped"
    warnings.warn(
        f"unclosed {what}: await its close() when done with it ({released})",
        ResourceWarning,
        stacklevel=1,  # no caller's line to point at: this runs in the garbage collector
    )
