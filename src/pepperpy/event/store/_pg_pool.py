"""Each event loop's connection pool of a PostgreSQL store, and work run on it, bounded.

:class:`Pools` is the store's boundary with asyncpg: it opens a loop's pool on first use
(migrating the schema on its first connection), runs each piece of work on a pooled
connection within ``command_timeout``, does it once more on a new connection when the
connection was lost before anything could have committed, and turns every driver error
into a :class:`~pepperpy.event.StoreError` saying what happened, and whether a write's
outcome is unknown.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from .._cancel import cancelling
from .._errors import ClosedError, ConfigurationError, StoreError
from ._pg_connect import (
    Progress,
    Watchdog,
    connection_lost,
    cut,
    pool_takes_hooks,
    reset,
    shielded_connect,
    tune,
)
from ._pg_loops import OnLoop, Status
from ._pg_options import PostgresOptions, explain
from ._pg_schema import migrate
from .base import redact_url

__all__ = ["UNKNOWN", "Pools"]

logger = logging.getLogger("pepperpy.event.store")

T = TypeVar("T")

_POOL_SIZE = 8

#: for each write: what may have happened when its outcome is unknown, and what to do
UNKNOWN = {
    "append": (
        "it was written",
        "retry with the same Event ids: an append already written is then a no-op",
    ),
    "delete_stream": (
        "the stream was deleted",
        "call delete_stream again: it returns False if the stream is deleted already",
    ),
    "save_snapshot": (
        "the snapshot was saved",
        "load_snapshot tells, and saving the same snapshot again is harmless",
    ),
}


class Pools:
    """A store's pools, one on each event loop using it (kept in its :class:`OnLoop`),
    and the bounded way work runs on them.

    Like the tasks on the loops, it holds the store's :class:`Status`, never the store.
    """

    def __init__(
        self, asyncpg: Any, url: str, dsn: str, options: PostgresOptions, status: Status
    ) -> None:
        self._asyncpg = asyncpg
        self.url = url
        self._dsn = dsn
        self.options = options
        self.schema = options.schema
        self._settings = {} if self.schema is None else {"search_path": self.schema}
        self._status = status
        #: what asyncpg raises: server errors, client errors, its internal errors, sockets
        self.errors: tuple[type[Exception], ...] = (
            asyncpg.PostgresError,
            asyncpg.InterfaceError,
            asyncpg.InternalClientError,
            OSError,
        )
        #: what connecting raises besides: asyncpg refuses some URL values with ValueError
        self._connect_errors = (*self.errors, ValueError)

    async def _pool(self, on: OnLoop) -> Any:
        """The loop's pool, opened (and the schema migrated) on first use."""
        if on.aborted is not None:
            raise ClosedError(f"the event store was closed ({on.aborted})")
        if on.ready is None:
            on.ready = asyncio.ensure_future(self._open(on))
            on.ready.add_done_callback(_read_open)
        ready = on.ready
        since = cancelling()  # what a task cleaning up after a cancellation counts
        try:
            return await asyncio.shield(ready)
        except asyncio.CancelledError:
            # the open was cancelled by ``abort``, not this caller
            if ready.cancelled() and on.aborted is not None and cancelling() <= since:
                raise ClosedError(
                    f"the event store was closed ({on.aborted}) before it had connected"
                ) from None
            raise
        except BaseException:
            if ready.done() and on.ready is ready:
                on.ready = None  # try again next time (e.g. the server was down)
            raise

    async def run(
        self,
        what: str,
        work: Callable[[Any, Progress], Awaitable[T]],
        on: OnLoop,
        *,
        closing: bool = False,
    ) -> T:
        """Run ``work(connection, progress)`` on a pooled connection: the backend boundary.

        Every driver error comes out as :class:`StoreError` naming ``what``, the asyncpg
        exception as its ``__cause__`` (:class:`ClosedError` once the store is closed).

        Each attempt waits at most ``command_timeout`` seconds for the server; a
        connection that did not answer in time is treated as lost (a partition, a
        silently dead connection), and so is cut off. If the connection breaks or
        times out before anything could have committed (the server dropped it while it
        sat idle in the pool, say), the work is done once more on a new connection:
        nothing was written, so that is safe for reads and writes alike. After a drop
        the pool's other connections may be stale too, so all of them are replaced.
        Once ``work`` has set ``progress.committing`` (its ``COMMIT`` may have been sent:
        see :meth:`Progress.commit`), a lost or silent connection leaves the outcome
        unknown: that is never retried here, and the error says so.

        Releasing the connection never raises: once the work has returned, its outcome
        stands (a ``COMMIT`` that returned is committed), and a connection that fails
        to reset on release is only discarded. A caller cancelled mid-statement has its
        connection cut off instead of released, so the cancellation takes effect at once;
        one cancelled while its connection is released leaves that release to finish
        (see :meth:`_release`).
        """
        pool = await self._pool(on)
        for retry in (False, True):
            try:
                connection = await pool.acquire()
            except self.errors as exc:
                raise self._failure(what, exc, on, closing=closing) from exc
            progress = Progress(connection)
            watchdog = Watchdog(connection, self.options.command_timeout)
            timed_out = lost = False
            with watchdog:
                try:
                    result = await work(connection, progress)
                except asyncio.CancelledError:
                    cut(connection)  # not released: that would wait for a cancel request
                    raise
                except self.errors as exc:
                    failure = exc
                    timed_out = watchdog.fired
                    lost = timed_out or self._lost(exc, connection)
                    if not lost:
                        await self._release(pool, connection, watchdog)
                except BaseException:  # the library's own refusal, say
                    await self._release(pool, connection, watchdog)
                    raise
                else:
                    # within the watchdog's bound: a reset nobody answers is cut off
                    await self._release(pool, connection, watchdog)
                    return result
            if lost:
                cut(connection)
            again = lost and not (retry or progress.committing or on.aborted)
            if not again or (self._status.closed and not closing):
                raise self._failure(
                    what,
                    failure,
                    on,
                    closing=closing,
                    progress=progress,
                    lost=lost,
                    timed_out=timed_out,
                ) from failure
            logger.warning(
                "PostgreSQL %s: %s (no COMMIT was sent); trying once more on a new connection",
                what,
                self._reason(failure, timed_out=timed_out),
            )
            if not timed_out:  # a drop: the server may have dropped the others too
                await pool.expire_connections()
        raise AssertionError("unreachable")  # pragma: no cover

    async def _release(self, pool: Any, connection: Any, watchdog: Watchdog) -> None:
        """Give ``connection`` back to ``pool``; if that fails, discard it, quietly.

        Bounded by ``watchdog``, which cuts off a connection whose reset hangs (a timeout
        here would cost a timer per call). asyncpg resets the connection in a task that
        the caller's cancellation does not stop: a caller cancelled meanwhile stops
        waiting at once, and the release goes on, the connection back in the pool once
        it is reset. ``watchdog`` keeps watching it (see :meth:`Watchdog.outlast`), and
        the pool's ``reset`` (:func:`~._pg_connect.reset`) reads the outcome nobody waits for any
        more. Cutting the connection off under that task instead made it fail with
        nobody to read its error ('Task exception was never retrieved'), and cost the
        next call a new connection.
        """
        try:
            await pool.release(connection)
        except asyncio.CancelledError:
            watchdog.outlast()
            raise
        except Exception as exc:  # asyncpg terminates a connection it cannot reset
            logger.debug("PostgreSQL: a connection failed on release and is discarded: %r", exc)
            cut(connection)  # already detached, most likely

    def _lost(self, exc: BaseException, connection: Any) -> bool:
        return connection_lost(self._asyncpg, exc, connection)

    def _reason(self, exc: BaseException, *, timed_out: bool = False) -> str:
        """What went wrong, in words (a timeout's own text is empty)."""
        return explain(self.options, exc, timed_out=timed_out)

    def _failure(
        self,
        what: str,
        exc: BaseException,
        on: OnLoop,
        *,
        closing: bool,
        progress: Progress | None = None,
        lost: bool = False,
        timed_out: bool = False,
    ) -> StoreError | ClosedError:
        reason = self._reason(exc, timed_out=timed_out)
        if lost and progress is not None and progress.committing:
            done, advice = UNKNOWN.get(what, ("it was done", "look before doing it again"))
            how = (
                f"the store was closed ({on.aborted})"
                if on.aborted is not None
                else "no answer came"
                if timed_out
                else "the connection was lost"
            )
            return StoreError(
                f"PostgreSQL {what}: {how} while committing, so whether {done} is unknown "
                f"({reason}); {advice}"
            )
        if on.aborted is not None and closing:
            return ClosedError(
                f"the event store was closed ({on.aborted}) before this {what} was "
                "committed: nothing was written"
            )
        if self._status.closed and not closing:
            return ClosedError("the event store is closed")
        return StoreError(f"PostgreSQL {what} failed: {reason}")

    async def _open(self, on: OnLoop) -> Any:
        """Open the loop's pool and migrate the schema on its first connection.

        The pool keeps no connection open on its own (``min_size=0``): one it had to
        keep would be reconnected in the background whenever one is cut off, also
        during a partition, where nobody waits for it.

        If that connection breaks, or stays silent past ``command_timeout``, during the
        setup (a restart, a failover, an admin's ``pg_terminate_backend``), the setup is
        done once more on a new connection, as :meth:`run` does for other work. That is
        always safe: each migration commits with the row recording it, so one that did
        commit is skipped the second time.
        """
        pool = await self._connect(on)
        try:
            for retry in (False, True):
                connection = await self._acquire_first(pool)
                watchdog = Watchdog(connection, self.options.command_timeout)
                try:
                    with watchdog:
                        await migrate(connection, self.schema)
                        await self._release(pool, connection, watchdog)
                    break
                except self.errors as exc:
                    lost = not watchdog.fired and self._lost(exc, connection)
                    reason = self._reason(exc, timed_out=watchdog.fired)
                    if lost:  # asyncpg's own words may be about a pool proxy let go
                        reason = f"the connection was lost ({reason})"
                    if retry or not (lost or watchdog.fired):
                        raise StoreError(f"PostgreSQL schema setup failed: {reason}") from exc
                    cut(connection)
                    logger.warning(
                        "PostgreSQL schema setup: %s; trying once more on a new connection",
                        reason,
                    )
        except BaseException:
            pool.terminate()  # nothing worth a goodbye, and the server may not answer
            raise
        on.pool = pool
        return pool

    async def _connect(self, on: OnLoop) -> Any:
        """A new pool for the running loop (it connects nothing yet).

        Its connections are opened through :func:`~._pg_connect.shielded_connect` and reset by
        :func:`~._pg_connect.reset` (asyncpg 0.30 and later take both functions), so a caller
        cancelled while its connection is opened or released leaves nothing unread.
        """
        asyncpg = self._asyncpg
        hooks: dict[str, Any] = {}
        if pool_takes_hooks(asyncpg.create_pool):
            hooks["connect"] = functools.partial(shielded_connect, on.openings, asyncpg.connect)
            hooks["reset"] = reset
        try:
            return await asyncpg.create_pool(
                self._dsn,
                min_size=0,
                max_size=_POOL_SIZE,
                server_settings=self._settings,
                timeout=self.options.connect_timeout,
                init=functools.partial(tune, self.options.command_timeout),
                **hooks,
            )
        except self._connect_errors as exc:
            raise self._cannot_connect(exc) from exc

    async def _acquire_first(self, pool: Any) -> Any:
        """A connection of ``pool``; a failure says the server cannot be reached."""
        try:
            return await pool.acquire()
        except self._connect_errors as exc:
            raise self._cannot_connect(exc) from exc

    def _cannot_connect(self, exc: BaseException) -> StoreError | ConfigurationError:
        where = redact_url(self.url)
        if isinstance(exc, self._asyncpg.ClientConfigurationError):  # an option asyncpg refused
            return ConfigurationError(f"PostgreSQL URL {where}: {exc}")
        return StoreError(f"cannot connect to PostgreSQL at {where}: {self._reason(exc)}")


def _read_open(ready: asyncio.Future[Any]) -> None:
    """Read how the store's open ended: its callers may all have stopped waiting.

    A caller cancelled meanwhile stops waiting at once, and ``asyncio.shield`` then no
    longer watches the open: if it failed with nobody waiting any more (and no call
    after it), its failure was reported as 'Task exception was never retrieved'.
    Callers still waiting get the failure themselves.
    """
    if not ready.cancelled() and ready.exception() is not None:
        logger.debug("PostgreSQL: opening the store failed: %r", ready.exception())
