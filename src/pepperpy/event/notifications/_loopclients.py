"""One network client per event loop, closed as that loop shuts down.

httpx and redis-py connections belong to the event loop that opened them, and a system
may serve one ``asyncio.run`` after another, or several threads each with its own loop.
:class:`LoopClients` gives each loop its own client (on the shared per-loop registry,
:class:`~pepperpy.event._loops.LoopShares`) and a *keeper* task there: ``asyncio.run``
cancels it while shutting the loop down, when the client can still close its connections.

The keeper holds neither the :class:`LoopClients` nor its owner, and is kept alive by
this module until it ends: an owner dropped without ``close()`` is collected, and its
keepers are then cancelled on their loops (closing their clients) with a
``ResourceWarning`` naming the owner, instead of being destroyed pending.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable
from contextvars import Context
from typing import Any, Generic, TypeVar

from .._loops import LoopShares, warn_dropped

__all__ = ["LoopClients", "owned_by"]

C = TypeVar("C")

#: keepers under way: a task awaiting a future is otherwise referenced only by its owner
_KEEPERS: set[asyncio.Task[None]] = set()


class _Held(Generic[C]):
    """The client of one loop and the task that closes it with the loop.

    ``taken`` is set when :meth:`LoopClients.close` closes the client itself, so the
    keeper it cancels does not close it too.
    """

    __slots__ = ("client", "keeper", "loop", "taken")

    def __init__(self, loop: asyncio.AbstractEventLoop, client: C) -> None:
        self.loop = loop
        self.client = client
        self.keeper: asyncio.Task[None] | None = None
        self.taken = False

    def close_there(self) -> bool:
        """Cancel the keeper on its own loop, from any thread: it closes the client there.
        False when that loop is closed (nothing can close the client any more)."""
        keeper = self.keeper
        if keeper is None:
            return True
        try:
            self.loop.call_soon_threadsafe(keeper.cancel)
        except RuntimeError:
            return False
        return True

    def abandon(self) -> None:
        """The loop closed without shutting down: its sockets can only be forgotten."""
        keeper, self.keeper = self.keeper, None
        if keeper is not None:
            _KEEPERS.discard(keeper)


class LoopClients(Generic[C]):
    """A client per event loop: ``make()`` opens one, ``close(client)`` closes it.

    ``owner`` names what holds the clients in the warning given if it is dropped without
    ``close()`` (its ``repr``, taken when the first client is made).
    """

    def __init__(
        self,
        make: Callable[[], C],
        close: Callable[[C], Awaitable[None]],
        *,
        owner: object = None,
    ) -> None:
        self._make = make
        self._close = close
        # the shares (held by each keeper and the finalizer) reach this object weakly only
        self._shares: LoopShares[_Held[C]] = LoopShares(_opener(weakref.ref(self)))
        self._owner = None if owner is None else weakref.ref(owner)
        #: the owner's repr, and what made it (see :func:`owned_by`), for the warning: kept
        #: as text, since neither may be reached from the finalizer
        self._label: list[str] = ["LoopClients", ""]
        weakref.finalize(self, _dropped, self._shares, self._label).atexit = False

    def _open(self, loop: asyncio.AbstractEventLoop) -> _Held[C]:
        held = _Held(loop, self._make())
        owner = None if self._owner is None else self._owner()
        if owner is not None:
            self._label[0] = repr(owner)
        # in a context of its own: a copy of the caller's would keep what its context
        # variables hold (a delivery's try, and through it the system) for the loop's life
        keeper = loop.create_task(_keep(self._shares, self._close, held), context=Context())
        _KEEPERS.add(keeper)
        keeper.add_done_callback(_KEEPERS.discard)
        held.keeper = keeper
        return held

    def here(self) -> C:
        """The running loop's client, made on its first use there."""
        return self._shares.here().client

    @property
    def open(self) -> bool:
        """Whether some loop holds a client (made, not yet closed)."""
        return bool(self._shares.values())

    async def close(self) -> None:
        """Close this loop's client now; other running loops close theirs on their own loop.

        Clients are made again on next use, so the owner stays usable.
        """
        here = asyncio.get_running_loop()
        with self._shares.lock:
            mine = self._shares.get(here)
            if mine is not None:
                self._shares.forget(mine)
                mine.taken = True
            others = self._shares.others(here)
        for other in others:
            if not other.close_there():
                with self._shares.lock:
                    self._shares.leave(other)
        if mine is not None:
            if mine.keeper is not None:
                mine.keeper.cancel()  # taken above, so it ends without closing anything
            await self._close(mine.client)


def _opener(
    ref: weakref.ref[LoopClients[C]],
) -> Callable[[asyncio.AbstractEventLoop], _Held[C]]:
    def open_here(loop: asyncio.AbstractEventLoop) -> _Held[C]:
        clients = ref()
        if clients is None:  # pragma: no cover - only a live LoopClients asks for a share
            raise RuntimeError("LoopClients was collected")
        return clients._open(loop)

    return open_here


async def _keep(
    shares: LoopShares[_Held[Any]], close: Callable[[Any], Awaitable[None]], held: _Held[Any]
) -> None:
    """Wait until cancelled (by ``asyncio.run``, :meth:`LoopClients.close` or the owner
    being dropped), then close the client unless ``close()`` took it."""
    try:
        await held.loop.create_future()
    except asyncio.CancelledError:
        with shares.lock:
            shares.forget(held)
            mine = not held.taken
            held.taken = True
        if mine:
            await close(held.client)
        raise


def _release(shares: LoopShares[_Held[Any]]) -> bool:
    with shares.lock:
        taken = shares.take_all()
    for held in taken:
        if not held.close_there():
            held.abandon()  # that loop is closed: the client can only be forgotten
    return bool(taken)


def owned_by(holder: object, parent: str) -> None:
    """Say that ``holder``'s clients (its ``_clients``, if a :class:`LoopClients`) are
    closed by ``parent`` (``"NotificationSystem"``), so that the warning given if they
    are dropped open names what the user should have closed."""
    clients = getattr(holder, "_clients", None)
    if isinstance(clients, LoopClients):
        clients._label[1] = parent


def _dropped(shares: LoopShares[_Held[Any]], label: list[str]) -> None:
    """The owner was collected without ``close()``: close its clients, and say so."""
    if not _release(shares):
        return
    warn_dropped(*label)
