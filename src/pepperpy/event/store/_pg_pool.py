"""Each event loop's connection pool of a PostgreSQL store, and work run on it, bounded.

:class:`Pools` is the store's boundary with asyncpg: it opens a loop's pool on first use
(migrating the schema on its first connection), runs each piece of work on a pooled
connection within ``command_timeout``, does it once more on a new connection when the
connection was lost before anything could have committed, and turns every driver error
into a :class:`~pepperpy.event.StoreError` saying what happened, and whether a write's
outcome is unknown. The bounds and the second attempt are :class:`~._pg_attempts.Attempts`,
which the checkpoint store shares; the pool and the words of the errors are this module's.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from .._cancel import cancelling
from .._errors import ClosedError, ConfigurationError, StoreError
from ._pg_attempts import Attempts, Failed, SetupWatchdog
from ._pg_connect import (
    Progress,
    Watchdog,
    cut,
    goodbye_class,
    pool_takes_hooks,
    reset,
    shielded_connect,
    tune,
)
from ._pg_loops import OnLoop, Status
from ._pg_options import PostgresOptions, connect_timed_out
from ._pg_schema import LongStep, migrate

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
    "write_stored": (
        "the batch of copied events was written",
        "run the copy again: it goes on after the destination's newest event",
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
        #: whether the first use may create the store (see ``PostgresBackend.create``)
        self.create = True
        self._status = status
        #: the bounded attempts, shared with the checkpoint store
        self._attempts = Attempts(asyncpg, options, logger)
        #: what asyncpg raises (see :attr:`Attempts.errors`)
        self.errors = self._attempts.errors

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

        Bounded and done once more as :meth:`Attempts.run` says: each attempt waits at
        most ``command_timeout`` seconds for the server; a connection lost or silent
        before anything could have committed (the server dropped it while it sat idle in
        the pool, say) is cut off and the work done once more on a new connection, unless
        the store is closing or closed; after a drop the pool's other connections may be
        stale too, so all of them are replaced. Once ``work`` has set
        ``progress.committing`` (its ``COMMIT`` may have been sent: see
        :meth:`Progress.commit`), a lost or silent connection leaves the outcome unknown:
        that is never retried here, and the error says so.

        Releasing the connection never raises: once the work has returned, its outcome
        stands (a ``COMMIT`` that returned is committed), and a connection that fails
        to reset on release is only discarded. A caller cancelled mid-statement has its
        connection cut off instead of released, so the cancellation takes effect at once;
        one cancelled while its connection is released leaves that release to finish
        (see :meth:`_release`).
        """

        def failure(failed: Failed) -> StoreError | ClosedError:
            return self._failure(what, failed, on, closing)

        def refused(exc: Exception) -> BaseException:
            """No pooled connection could be had (a new one failed to open)."""
            misconfigured = self._attempts.misconfigured(exc, self.url)
            return misconfigured or failure(self._attempts.failed(exc))

        pool = await self._pool(on)
        return await self._attempts.run(
            work,
            _Loans(self, pool, refused, waits=True),
            what=f"PostgreSQL {what}",
            failure=failure,
            unsent="no COMMIT was sent",
            may_retry=lambda: on.aborted is None and not (self._status.closed and not closing),
        )

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

    def _failure(
        self, what: str, failed: Failed, on: OnLoop, closing: bool
    ) -> StoreError | ClosedError:
        """The error of ``what``, which failed as ``failed`` says; a :class:`StoreError`
        says whether its work may have committed (``written``: ``failed.written``)."""
        error = self._error(what, failed, on, closing)
        if isinstance(error, StoreError):
            error.written = failed.written
        return error

    def _error(
        self, what: str, failed: Failed, on: OnLoop, closing: bool
    ) -> StoreError | ClosedError:
        if failed.unknown:
            done, advice = UNKNOWN.get(what, ("it was done", "look before doing it again"))
            how = f"the store was closed ({on.aborted})" if on.aborted is not None else failed.how
            return StoreError(
                f"PostgreSQL {what}: {how} while committing, so whether {done} is unknown "
                f"({failed.reason}); {advice}"
            )
        if on.aborted is not None and closing:
            return ClosedError(
                f"the event store was closed ({on.aborted}) before this {what} was "
                "committed: nothing was written"
            )
        if self._status.closed and not closing:
            return ClosedError("the event store is closed")
        return StoreError(f"PostgreSQL {what} failed: {failed.reason}")

    async def _open(self, on: OnLoop) -> Any:
        """Open the loop's pool and migrate the schema on its first connection.

        The pool keeps no connection open on its own (``min_size=0``): one it had to
        keep would be reconnected in the background whenever one is cut off, also
        during a partition, where nobody waits for it.

        If that connection breaks, or stays silent past ``command_timeout``, during the
        setup (a restart, a failover, an admin's ``pg_terminate_backend``), the setup is
        done once more on a new connection (:meth:`Attempts.set_up`). That is always
        safe: each migration commits with the row recording it, so one that did commit
        is skipped the second time.

        A migration's own statements, and the wait for the schema lock while another
        process migrates, are not bounded by ``command_timeout`` (see :class:`_Migrating`).
        """
        pool = await self._connect(on)
        try:
            await self._attempts.set_up(
                functools.partial(migrate, schema=self.schema, create=self.create),
                _Loans(self, pool, self._cannot_connect, self._attempts.connect_errors),
                what="PostgreSQL schema setup",
                failure=lambda reason: StoreError(f"PostgreSQL schema setup failed: {reason}"),
                watch=_Migrating,
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
        cancelled while its connection is opened or released leaves nothing unread. They
        close without waiting for the server's answer (:func:`~._pg_connect.goodbye_class`):
        ``Pool.close()`` still waits for those lent out, then closes the idle ones at once,
        where it waited for a partitioned server until ``close()`` gave up on it.
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
                connection_class=goodbye_class(asyncpg.Connection),
                **hooks,
            )
        except self._attempts.connect_errors as exc:
            raise self._cannot_connect(exc) from exc

    def _cannot_connect(self, exc: BaseException) -> StoreError | ConfigurationError:
        return self._attempts.cannot_connect(exc, self.url, "cannot connect to PostgreSQL")


class _Loans:
    """The connections of one loop's pool, lent to :class:`Attempts` (a ``Lender``).

    ``refused`` is the error when no connection can be had: a failure of the work's
    own (a :meth:`Pools.run`), or that the server cannot be reached (the first one).

    Getting a connection, a free one or a new one, takes at most ``connect_timeout``
    seconds, so a call's first attempt ends within about ``connect_timeout +
    command_timeout`` however many callers wait for the pool's connections (each used to
    wait for all those before it). ``waits``: callers may queue for a busy pool (a
    :meth:`Pools.run`), and the error of one that waited too long says so.
    """

    __slots__ = ("_errors", "_pool", "_pools", "_refused", "_waits")

    def __init__(
        self,
        pools: Pools,
        pool: Any,
        refused: Callable[[Exception], BaseException],
        errors: tuple[type[Exception], ...] | None = None,
        *,
        waits: bool = False,
    ) -> None:
        self._pools = pools
        self._pool = pool
        self._refused = refused
        self._errors = pools.errors if errors is None else errors
        self._waits = waits

    async def acquire(self) -> Any:
        # asyncio.timeout, not acquire(timeout=...): asyncpg would bound the release's
        # reset by the same number, which the watchdog bounds already
        bound = self._pools.options.connect_timeout
        try:
            async with asyncio.timeout(bound):
                return await self._pool.acquire()
        except TimeoutError as exc:
            if not self._waits:
                raise self._refused(exc) from exc  # connecting timed out
            busy = _busy(self._pool, self._pools.options)
            raise self._refused(TimeoutError(busy)) from exc
        except self._errors as exc:
            raise self._refused(exc) from exc

    async def release(self, connection: Any, watchdog: Watchdog) -> None:
        await self._pools._release(self._pool, connection, watchdog)

    def discard(self, connection: Any) -> None:
        cut(connection)

    async def renew(self, timed_out: bool) -> None:
        if not timed_out:  # a drop: the server may have dropped the others too
            await self._pool.expire_connections()


class _Migrating:
    """The schema setup's connection (:func:`~._pg_schema.migrate` gets it), which lifts
    the setup's ``command_timeout`` bound for each step ``migrate`` says may take long
    (:class:`~._pg_schema.LongStep`): a migration's script, and the wait for the schema
    lock another process holds as it migrates.

    ``command_timeout`` is there to notice a silent network; a migration on a big store
    (an index built over the whole log) may take far longer than one statement, and was
    cut off, done again and cut off again, every time, with an error blaming a silent
    server. A dead connection is still noticed meanwhile: TCP keepalive and
    ``TCP_USER_TIMEOUT`` drop it. Each migration is logged at INFO as it starts and ends.
    """

    __slots__ = ("_connection", "_watchdog")

    def __init__(self, connection: Any, watchdog: SetupWatchdog) -> None:
        self._connection = connection
        self._watchdog = watchdog

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection, name)

    @contextlib.asynccontextmanager
    async def long_step(self, step: LongStep) -> AsyncIterator[None]:
        doing = str(step)
        if step.migration is not None:
            logger.info("PostgreSQL: %s started (it may take long on a big store)", doing)
        started = asyncio.get_running_loop().time()
        self._watchdog.lift(doing)
        yield  # a failure propagates with the bound lifted: the setup names the step
        self._watchdog.restore()
        if step.migration is not None:
            took = asyncio.get_running_loop().time() - started
            logger.info("PostgreSQL: %s finished in %.1f s", doing, took)


def _busy(pool: Any, options: PostgresOptions) -> str:
    """What to say when no pooled connection could be had within ``connect_timeout``:
    all of them were busy, or the ones being opened did not open in time."""
    connected = pool.get_size()
    if connected >= _POOL_SIZE:
        return (
            f"no pooled connection became free within {options.connect_timeout:g} s "
            f"(connect_timeout): all {_POOL_SIZE} connections of the pool were busy"
        )
    said = connect_timed_out(options)
    if connected:
        said += f" (the {connected} other connections open were busy)"
    return said


def _read_open(ready: asyncio.Future[Any]) -> None:
    """Read how the store's open ended: its callers may all have stopped waiting.

    A caller cancelled meanwhile stops waiting at once, and ``asyncio.shield`` then no
    longer watches the open: if it failed with nobody waiting any more (and no call
    after it), its failure was reported as 'Task exception was never retrieved'.
    Callers still waiting get the failure themselves.
    """
    if not ready.cancelled() and ready.exception() is not None:
        logger.debug("PostgreSQL: opening the store failed: %r", ready.exception())
