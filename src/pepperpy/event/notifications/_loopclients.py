"""One network client per event loop, closed as that loop shuts down.

httpx and redis-py connections belong to the event loop that opened them, and a system
may serve one ``asyncio.run`` after another, or several threads each with its own loop.
:class:`LoopClients` gives each loop its own client (on the shared per-loop registry,
:class:`~pepperpy.event._loops.LoopShares`) and a *keeper* task there: ``asyncio.run``
cancels it while shutting the loop down, when the client can still close its connections.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from .._loops import LoopShares

__all__ = ["LoopClients"]

C = TypeVar("C")


class _Held(Generic[C]):
    """The client of one loop and the task that closes it with the loop."""

    __slots__ = ("client", "keeper", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop, client: C) -> None:
        self.loop = loop
        self.client = client
        self.keeper: asyncio.Task[None] | None = None

    def abandon(self) -> None:
        """The loop closed without shutting down: its sockets can only be forgotten."""
        self.keeper = None


class LoopClients(Generic[C]):
    """A client per event loop: ``make()`` opens one, ``close(client)`` closes it."""

    def __init__(self, make: Callable[[], C], close: Callable[[C], Awaitable[None]]) -> None:
        self._make = make
        self._close = close
        self._shares: LoopShares[_Held[C]] = LoopShares(self._open)

    def _open(self, loop: asyncio.AbstractEventLoop) -> _Held[C]:
        held = _Held(loop, self._make())
        held.keeper = loop.create_task(self._keep(held))
        return held

    def here(self) -> C:
        """The running loop's client, made on its first use there."""
        return self._shares.here().client

    async def _keep(self, held: _Held[C]) -> None:
        """Wait until cancelled (by ``asyncio.run`` or :meth:`close`), then close the client."""
        try:
            await held.loop.create_future()
        except asyncio.CancelledError:
            with self._shares.lock:
                mine = self._shares.get(held.loop) is held
                if mine:
                    self._shares.forget(held)
            if mine:
                await self._close(held.client)
            raise

    async def close(self) -> None:
        """Close this loop's client now; other running loops close theirs on their own loop.

        Clients are made again on next use, so the owner stays usable.
        """
        here = asyncio.get_running_loop()
        with self._shares.lock:
            mine = self._shares.get(here)
            if mine is not None:
                self._shares.forget(mine)
            others = self._shares.others(here)
        for other in others:
            keeper = other.keeper
            if keeper is None:
                continue
            try:
                other.loop.call_soon_threadsafe(keeper.cancel)  # its keeper closes the client
            except RuntimeError:  # that loop is closed: nothing can close it any more
                with self._shares.lock:
                    self._shares.leave(other)
        if mine is not None:
            if mine.keeper is not None:
                mine.keeper.cancel()  # forgotten above, so it ends without closing anything
            await self._close(mine.client)
