"""The PostgreSQL checkpoint store's connections, one per event loop.

A loop's connection (:class:`_OnLoop`), kept by a task that only waits, so it is dropped
as its loop shuts down or the store is collected; and the two lenders the store's
bounded attempts take a connection from (:class:`~.store._pg_attempts.Lender`): the
loop's own, on which calls take turns (:class:`_Turns`), and new ones for the table's
setup (:class:`_Openings`).
"""

from __future__ import annotations

import asyncio
import contextlib
from contextvars import Context
from typing import TYPE_CHECKING, Any

from ._errors import StoreError
from ._loops import LoopShares, warn_dropped
from .store._pg_connect import Openings, cut
from .store.postgres import Watchdog, shielded_connect, tune_socket

if TYPE_CHECKING:
    from ._checkpoints_pg import PostgresCheckpointStore


class _OnLoop:
    """A PostgreSQL checkpoint store's connection on one event loop.

    asyncpg connections work on the loop that opened them only. ``keeper`` is a task
    that only waits: ``asyncio.run`` cancels it when its loop shuts down, and it then
    drops the connection while the loop can still close the socket.
    """

    __slots__ = ("connection", "keeper", "lock", "loop", "openings", "ready")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.lock = asyncio.Lock()
        self.connection: Any = None
        #: whether the checkpoint table was there (or made) when ``connection`` was set
        #: up: until it is, the first write on it creates the table
        self.ready = False
        self.keeper: asyncio.Task[None] | None = None
        #: connections being opened (see :func:`~pepperpy.event.store.postgres.shielded_connect`),
        #: abandoned once this share is closed or dropped
        self.openings = Openings("the PostgreSQL checkpoint store")

    def forget(self, connection: Any) -> None:
        """Forget ``connection`` if it is still this loop's, and cut it off."""
        if self.connection is connection:
            self.connection = None
        cut(connection)

    def abandon(self) -> None:
        """Drop the connection without awaiting anything (its loop ended, or is ending).

        Best effort: on a closed loop the socket can no longer be closed cleanly.
        """
        connection, self.connection = self.connection, None
        keeper, self.keeper = self.keeper, None
        if keeper is not None and self.loop.is_closed():  # it will never run again
            _KEEPERS.discard(keeper)
        if keeper is not None and not keeper.done():
            with contextlib.suppress(RuntimeError):
                keeper.cancel()
        with contextlib.suppress(RuntimeError):  # their callers get ClosedError
            self.openings.abandon("the store was closed from another event loop, or dropped")
        if connection is not None:
            cut(connection)


#: keepers under way: a task that only waits is otherwise referenced by its store alone,
#: and a store dropped without close() would take it along, destroyed while pending
_KEEPERS: set[asyncio.Task[None]] = set()


def _start_keeper(loops: LoopShares[_OnLoop], on: _OnLoop) -> asyncio.Task[None]:
    """Start ``on``'s keeper on the running loop; it holds ``loops``, not the store.

    It runs in a context of its own: a copy of the caller's would keep whatever its
    context variables hold for as long as the loop runs.
    """
    keeper = asyncio.get_running_loop().create_task(_keep(loops, on), context=Context())
    _KEEPERS.add(keeper)
    keeper.add_done_callback(_KEEPERS.discard)
    return keeper


async def _keep(loops: LoopShares[_OnLoop], on: _OnLoop) -> None:
    """Wait until cancelled: by ``close()``, by the loop shutting down, or by the store
    being dropped; then drop the connection (unless ``close()`` is closing it)."""
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        with loops.lock:
            if on.keeper is asyncio.current_task():
                on.keeper = None
                loops.leave(on)
        raise


def _dropped(loops: LoopShares[_OnLoop], label: list[str]) -> None:
    """A store was collected without ``close()``: drop its connections, and say so."""
    with loops.lock:
        shares = loops.take_all()
    held = False
    for on in shares:
        held = held or on.connection is not None or on.keeper is not None
        try:  # dropped on its own loop, which closes the socket properly
            on.loop.call_soon_threadsafe(on.abandon)
        except RuntimeError:  # that loop is closed
            on.abandon()
    if not held:
        return
    warn_dropped(*label)


class _Turns:
    """The running loop's connection, lent to one attempt at a time (a
    :class:`~pepperpy.event.store._pg_attempts.Lender`): opened and set up on first use,
    and again once it was lost. Attempts take turns on it, holding its lock."""

    __slots__ = ("_on", "_store")

    def __init__(self, store: PostgresCheckpointStore) -> None:
        self._store = store
        self._on: _OnLoop | None = None

    async def acquire(self) -> Any:
        store = self._store
        on = store._loops.here()
        await _take_turn(on.lock, store.options.connect_timeout)
        try:
            if on.connection is not None and on.connection.is_closed():
                on.forget(on.connection)
            if on.connection is None:
                on.connection = await store._open(on)
                if on.keeper is None:
                    on.keeper = _start_keeper(store._loops, on)
        except BaseException:
            on.lock.release()
            raise
        self._on = on
        return on.connection

    def _give_back(self) -> _OnLoop:
        """The loop whose connection was lent, its turn over."""
        on, self._on = self._on, None
        assert on is not None, "nothing was lent"
        on.lock.release()
        return on

    async def release(self, connection: Any, watchdog: Watchdog) -> None:
        self._give_back()

    def discard(self, connection: Any) -> None:
        self._give_back().forget(connection)

    async def renew(self, timed_out: bool) -> None:
        """Nothing to do: the next attempt opens a new connection."""


async def _take_turn(lock: asyncio.Lock, bound: float) -> None:
    """Wait for ``lock`` (the loop's one connection) at most ``bound`` seconds
    (``connect_timeout``), as the event store waits for a pooled connection: a call's
    first attempt then ends within about ``connect_timeout + command_timeout`` however
    many callers take turns before it (each used to wait for all of them)."""
    try:
        async with asyncio.timeout(bound):
            await lock.acquire()
    except TimeoutError:
        error = StoreError(
            f"PostgreSQL checkpoint store failed: its connection did not become free within "
            f"{bound:g} s (connect_timeout): the calls on one event loop take turns on one "
            "connection, and those before this one held it"
        )
        error.written = False
        raise error from None


class _Openings:
    """New connections for one loop's table setup (a
    :class:`~pepperpy.event.store._pg_attempts.Lender`): the one set up is kept as the
    loop's connection, one that failed is cut off."""

    __slots__ = ("_on", "_store")

    def __init__(self, store: PostgresCheckpointStore, on: _OnLoop) -> None:
        self._store = store
        self._on = on

    async def acquire(self) -> Any:
        store = self._store
        attempts = store._attempts()
        try:
            connection = await shielded_connect(
                self._on.openings,
                attempts.asyncpg.connect,
                store._dsn,
                server_settings=store._settings,
                timeout=store.options.connect_timeout,
            )
        except attempts.connect_errors as exc:
            raise attempts.cannot_connect(exc, store.url, store._cannot_open) from exc
        tune_socket(connection, store.options.command_timeout)
        return connection

    async def release(self, connection: Any, watchdog: Watchdog) -> None:
        """Nothing to do: the connection is kept, as the loop's."""

    def discard(self, connection: Any) -> None:
        cut(connection)

    async def renew(self, timed_out: bool) -> None:
        """Nothing to do: the next attempt opens a new connection."""
