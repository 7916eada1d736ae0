"""One PostgreSQL connection, from its opening to its end, never waited on unbounded.

A connection is opened in a task of its own (:func:`shielded_connect`), so a caller
cancelled meanwhile leaves nothing unread; it is told to notice a dead peer
(:func:`tune_socket`); work on it is bounded by a :class:`Watchdog`, which cuts it off
(:func:`cut`) rather than sending a cancel request to a server that does not answer;
a failure says whether the connection itself is gone (:func:`connection_lost`); and
:class:`Progress` tells whether a statement that commits may have been sent, so that
work is done again only when it cannot have been written. The event store and the
checkpoint store share all of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import socket
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

from .._cancel import cancelling
from .._errors import ClosedError

__all__ = [
    "OPENING_GRACE",
    "Openings",
    "Progress",
    "Watchdog",
    "connection_lost",
    "cut",
    "goodbye_class",
    "in_transaction",
    "pool_takes_hooks",
    "reset",
    "shielded_connect",
    "tune",
    "tune_socket",
]

logger = logging.getLogger("pepperpy.event.store")

T = TypeVar("T")

#: SQLSTATEs saying the server ended the session (connection exceptions are class 08)
_SESSION_ENDED = frozenset({"57P01", "57P02", "57P03"})
#: seconds ``close`` waits for connections being opened for work queued before it (a
#: server that answers opens one in milliseconds; one that does not is not waited for)
OPENING_GRACE = 1.0
#: TCP keepalive on every connection: first probe after 10 s of silence, then every 5 s
_KEEPALIVE = (("TCP_KEEPIDLE", 10), ("TCP_KEEPINTVL", 5), ("TCP_KEEPCNT", 3))


class Progress:
    """How far one attempt at a piece of work on ``connection`` got: whether a statement
    that commits (a ``COMMIT``, or a write in autocommit) may have been sent.

    Made as the attempt starts, while the connection is open: asyncpg lets go of its
    protocol once it is closed, and the protocol's count of the statements sent is what
    tells (see :func:`_statements_sent`). The event store's writes and the checkpoint
    store's share it.
    """

    __slots__ = ("_protocol", "committing")

    def __init__(self, connection: Any) -> None:
        self.committing = False
        self._protocol = _protocol(connection)

    @contextlib.contextmanager
    def commit(self) -> Iterator[None]:
        """Around the statement that commits: ``committing`` is set for it, and cleared
        again if it failed without being sent.

        asyncpg refuses to send anything on a connection already closed, or one that has
        received the server's termination notice (``FATAL``) since its last statement,
        and the server ends such a session, rolling back what it had not committed: the
        work may then be done again on a new connection. What failed once the statement
        went to the socket stays of unknown outcome, even if it was lost on its way (the
        client cannot tell).
        """
        sent = _statements_sent(self._protocol)
        self.committing = True
        try:
            yield
        except Exception:
            if sent is not None and _statements_sent(self._protocol) == sent:
                self.committing = False  # it never left this process
            raise


async def in_transaction(
    connection: Any, progress: Progress, body: Callable[[Any], Awaitable[T]]
) -> T:
    """Run ``body`` in a transaction whose ``COMMIT`` goes under ``progress.commit()``:
    ``progress.committing`` then says whether it may have been sent (a ``COMMIT`` asyncpg
    refused to send leaves the work safe to do again).

    If ``body`` fails, that error is raised even when the ``ROLLBACK`` fails too (on a
    lost connection it does; the server rolls back when the session ends). A cancelled
    (or timed-out) ``body`` sends no ``ROLLBACK``: the caller cuts the connection off,
    which rolls back as surely, without waiting on a server that may not answer.
    """
    transaction = connection.transaction()
    await transaction.start()
    try:
        result = await body(connection)
    except Exception:
        with contextlib.suppress(Exception):
            await transaction.rollback()
        raise
    with progress.commit():
        await transaction.commit()
    return result


def _protocol(connection: Any) -> Any:
    """asyncpg's protocol object under ``connection`` (pooled or not), or None."""
    try:
        return connection._protocol  # asyncpg keeps no public handle; a pool proxy forwards
    except AttributeError:  # a proxy the pool already detached
        return None


def _statements_sent(protocol: Any) -> int | None:
    """How many statements asyncpg has handed to the connection's socket (None: unknown).

    asyncpg counts a statement (``queries_count``, a read-only attribute of its protocol)
    right after writing it to the transport, and raises before writing when it cannot
    send (the connection closed, or the protocol not idle). A failed statement that left
    the count unchanged was therefore never sent; one that moved it may have reached the
    server. Where the count cannot be read, every failed statement counts as sent.
    """
    count = getattr(protocol, "queries_count", None)
    return count if isinstance(count, int) else None


def connection_lost(asyncpg: Any, exc: BaseException, connection: Any) -> bool:
    """Whether ``exc`` means the connection itself is gone (not a refused statement)."""
    if isinstance(exc, asyncpg.InternalClientError):
        return True  # asyncpg's protocol state is broken: the connection is unusable
    if isinstance(exc, OSError) and not isinstance(exc, TimeoutError):
        return True
    sqlstate = str(getattr(exc, "sqlstate", "") or "")
    if sqlstate.startswith("08") or sqlstate in _SESSION_ENDED:
        return True
    try:
        return bool(connection.is_closed())
    except Exception:  # a proxy asyncpg detached: its connection was dropped
        return True


class Watchdog:
    """Cuts ``connection`` off if the ``with`` block outlasts ``seconds`` (the server is
    silent); ``fired`` then says so.

    Cutting the connection, rather than cancelling the statement, fails every wait on it
    at once (a ``ROLLBACK`` on the way out included) and sends no cancel request, which
    asyncpg would make on a new connection to the same silent server.
    """

    __slots__ = ("_handle", "_outlasting", "connection", "fired", "seconds")

    def __init__(self, connection: Any, seconds: float) -> None:
        self.connection = connection
        self.seconds = seconds
        self.fired = False
        self._handle: asyncio.TimerHandle | None = None
        self._outlasting = False

    def __enter__(self) -> Watchdog:
        self._handle = asyncio.get_running_loop().call_later(self.seconds, self._fire)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._handle is not None and not self._outlasting:
            self._handle.cancel()

    def outlast(self) -> None:
        """Keep watching after the ``with`` block: work on a pooled connection that goes
        on without its cancelled caller (a release) stays bounded.

        Once the pool has taken the connection back, cutting it off through the
        caller's proxy does nothing (asyncpg detaches a proxy on release, and the next
        user of the connection gets a new one), so the timer is simply left to expire.
        """
        self._outlasting = True

    def _fire(self) -> None:
        self.fired = True
        cut(self.connection)


def cut(connection: Any) -> None:
    """Terminate ``connection`` (pooled or not) without waiting for anything."""
    with contextlib.suppress(Exception):  # a pooled one the pool already let go
        connection.terminate()


async def _goodbye(connection: Any, *, timeout: float | None = None) -> None:  # noqa: ASYNC109 - asyncpg's
    """Close ``connection`` as libpq does: send the Terminate message, close the socket,
    and wait for nothing (``timeout`` is asyncpg's, and has nothing to bound).

    asyncpg's own ``close()`` then waits for the server to close its end; behind a
    partition that never comes, and a store's ``close()`` waited its whole bound on
    connections that held nothing. The server ends the session on the Terminate message,
    or, if the network lost it, when it notices the client gone (as for any cut-off
    connection): a connection closed here is idle, with nothing to commit or roll back.
    """
    connection.terminate()  # asyncpg sends Terminate before it drops the transport


@functools.cache
def goodbye_class(connection_class: type) -> type:
    """``connection_class`` (asyncpg's ``Connection``) with ``close()`` that waits for
    nothing (:func:`_goodbye`): the pools' connections.

    A pool closes a connection only once it is idle: ``Pool.close()`` waits for every
    connection lent out to come back first (a call under way finishes), then closes
    the rest; one it retires as it is given back (expired, used up) is done with its
    work. Terminating one then loses nothing, and no close waits on the network.
    """
    return type(
        "GoodbyeConnection",
        (connection_class,),
        {"__slots__": (), "__module__": __name__, "close": _goodbye},
    )


async def reset(connection: Any) -> None:
    """The pools' ``reset``: asyncpg's own reset query, and the outcome of the release
    read even when its caller, cancelled, no longer waits for it.

    asyncpg releases a connection in a task shielded from the caller (it rolls back an
    open transaction itself, before this), and cuts the connection off if the reset
    fails. A caller cancelled meanwhile no longer reads that failure: the task reads it
    here instead, costing one callback per release.
    """
    release = asyncio.current_task()
    if release is not None:
        release.add_done_callback(_released)
    query = connection.get_reset_query()
    if query:
        await connection.execute(query)


def _released(release: asyncio.Future[Any]) -> None:
    """Read how a release ended (its caller may have given up on it)."""
    failure = None if release.cancelled() else release.exception()
    if failure is not None:
        logger.debug("PostgreSQL: a connection failed on release and is discarded: %r", failure)


class Openings(set["asyncio.Future[Any]"]):
    """The connections being opened on one loop (each a task of
    :func:`shielded_connect`), and whether the store has abandoned them.

    Closing a store does not wait for a connection still being opened: against a
    server that accepts TCP connections and never answers, each would hold ``close()``
    for its ``connect_timeout``. :meth:`abandon` cancels them and refuses new ones;
    their callers get :class:`~pepperpy.event.ClosedError` (nothing was sent on them),
    which names the store as ``store`` does ("the event store", "the PostgreSQL
    checkpoint store"). Both PostgreSQL stores keep theirs in one.
    """

    def __init__(self, store: str = "the event store") -> None:
        super().__init__()
        #: the store, in words, for the callers' :class:`ClosedError`
        self.store = store
        #: why the openings were abandoned (the store is closing), once they were
        self.abandoned: str | None = None

    def abandon(self, reason: str) -> None:
        """Cancel every opening under way, and refuse those asked for from now on."""
        if self.abandoned is None:
            self.abandoned = reason
        for opening in list(self):
            _cancel_opening(opening)

    def abandon_later(self, loop: asyncio.AbstractEventLoop, bound: float) -> asyncio.TimerHandle:
        """:meth:`abandon` them ``OPENING_GRACE`` seconds from now (``bound``, a store's
        close bound, if smaller), on ``loop`` (theirs): what ``close()`` gives work that
        queued before it and waits for a connection (a healthy server opens one in
        milliseconds). Cancel the timer returned once closed."""
        grace = min(OPENING_GRACE, bound)
        reason = f"close() gave up on the connections still being opened after {grace:g} s"
        return loop.call_later(grace, self.abandon, reason)


def _cancel_opening(opening: asyncio.Future[Any]) -> None:
    """Cancel ``opening``, but not while asyncio hands its new socket to its protocol.

    Cancelled in that step (the end of ``loop.create_connection``), asyncio closes the
    transport under a protocol nobody listens to any more: asyncpg's TLS probe then
    fails a future nobody reads ('Future exception was never retrieved'). That step
    takes a loop iteration or two, so the cancellation is simply tried again next
    iteration; anywhere else asyncpg closes its socket and reads its futures itself.
    """
    if opening.done():
        return
    if _handing_over(opening):
        opening.get_loop().call_soon(_cancel_opening, opening)
    else:
        opening.cancel()


def _handing_over(opening: asyncio.Future[Any]) -> bool:
    """Whether the task ``opening`` waits in asyncio's handover of a plain TCP socket to
    its protocol (its chain of awaited coroutines is inspected; any other form: no)."""
    coro: Any = opening.get_coro() if isinstance(opening, asyncio.Task) else None
    while coro is not None:
        frame = getattr(coro, "cr_frame", None)
        if frame is None:
            return False
        if frame.f_code.co_name == "_create_connection_transport":
            return not frame.f_locals.get("ssl")  # a TLS handshake may last: cancel it
        coro = getattr(coro, "cr_await", None)
    return False


def _abandoned(openings: set[asyncio.Future[Any]]) -> ClosedError | None:
    if not isinstance(openings, Openings) or openings.abandoned is None:
        return None
    reason = openings.abandoned
    return ClosedError(
        f"{openings.store} was closed ({reason}) before its connection to PostgreSQL "
        "was open: nothing was written"
    )


async def shielded_connect(
    openings: set[asyncio.Future[Any]],
    connect: Callable[..., Awaitable[Any]],
    *args: Any,
    **kwargs: Any,
) -> Any:
    """``await connect(*args, **kwargs)`` (asyncpg's), never abandoned half-way.

    asyncpg cannot be cancelled safely at one point while it opens a connection:
    cancelled as the socket opens, it leaves the future of its TLS negotiation to fail
    unread ('Future exception was never retrieved'). The connect therefore runs in a
    task of its own, kept in ``openings`` until it ends. A caller cancelled meanwhile
    stops waiting at once; the connect goes on, bounded by its own ``timeout``, and the
    connection it makes is then cut off, or its error read.

    Once the store closing abandons ``openings`` (an :class:`Openings`), the connect is
    cancelled away from that point and the caller gets :class:`ClosedError`, as does a
    caller asking for a connection afterwards: nothing connects after that.
    """
    refused = _abandoned(openings)
    if refused is not None:
        raise refused
    opening = asyncio.ensure_future(connect(*args, **kwargs))
    openings.add(opening)
    opening.add_done_callback(openings.discard)
    since = cancelling()  # what a task cleaning up after a cancellation counts
    try:
        return await asyncio.shield(opening)
    except asyncio.CancelledError:
        refused = _abandoned(openings)
        if opening.cancelled() and refused is not None and cancelling() <= since:
            raise refused from None  # the store abandoned it, not this caller
        opening.add_done_callback(_drop_opened)
        raise


def _drop_opened(opening: asyncio.Future[Any]) -> None:
    """Cut off the connection nobody waits for any more, or read why it failed."""
    if opening.cancelled():
        return
    failure = opening.exception()
    if failure is None:
        cut(opening.result())
    else:
        logger.debug("PostgreSQL: a connection its caller gave up on failed: %r", failure)


@functools.cache
def pool_takes_hooks(create_pool: Callable[..., Any]) -> bool:
    """Whether asyncpg's ``create_pool`` takes ``connect`` and ``reset`` (0.30 and later)."""
    return "reset" in inspect.signature(create_pool).parameters


def tune_socket(connection: Any, user_timeout: float) -> None:
    """Have the kernel notice a dead peer on ``connection``'s TCP socket.

    TCP keepalive probes an idle connection (the pool's, the listener's) after 10 s of
    silence; ``TCP_USER_TIMEOUT`` (Linux) drops a connection whose sent data stays
    unacknowledged for ``user_timeout`` seconds. Either way asyncpg then sees the
    connection lost, and the store replaces it. Unix sockets need neither; an option the
    platform lacks is skipped.
    """
    transport = getattr(connection, "_transport", None)  # asyncpg keeps no public handle
    sock = None if transport is None else transport.get_extra_info("socket")
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for name, value in _KEEPALIVE:
            option = getattr(socket, name, None)
            if option is not None:
                sock.setsockopt(socket.IPPROTO_TCP, option, value)
        option = getattr(socket, "TCP_USER_TIMEOUT", None)
        if option is not None:
            sock.setsockopt(
                socket.IPPROTO_TCP, option, min(max(1, int(user_timeout * 1000)), 2**31 - 1)
            )


async def tune(command_timeout: float, connection: Any) -> None:
    """The pools' ``init``: every new connection gets the kernel's dead-peer bounds."""
    tune_socket(connection, command_timeout)
