"""The PostgreSQL backend (asyncpg): one store shared by many processes and hosts.

Ordering promise: a subscription must never skip an event that commits late. Writers
therefore take global positions from a one-row counter (``pepperpy_head``) whose row
lock is held until commit, so positions are handed out in commit order and a reader
that has seen position ``n`` can never later find a new event below ``n``. The locked
section is one statement plus the commit; ``docs/store.md`` explains why this was
chosen over tracking in-flight transaction ids.

Live subscriptions wake on ``LISTEN``/``NOTIFY`` (the appending transaction notifies on
commit) through one listener connection per store, reconnected if it drops or stops
answering its pings; after a reconnect every waiter re-reads, so notifications lost in
between cost nothing.

Nothing waits on the network without a bound (a partition leaves connections open with
nobody answering, and the server's ``statement_timeout`` cannot help then): each attempt
at an operation waits ``command_timeout`` for PostgreSQL, connecting ``connect_timeout``,
``close`` at most ``CLOSE_TIMEOUT``, and the kernel is told to give up on a silent peer
(TCP keepalive, ``TCP_USER_TIMEOUT``). A connection that timed out, or whose caller was
cancelled mid-statement, is cut off rather than released: releasing it would wait for
asyncpg's cancel request, which needs a new connection to the same silent server. Where
asyncpg goes on without a cancelled caller (the reset of a connection being released,
the opening of a new one), that work is left to finish, within its bound, and its
outcome is read: nothing fails unseen on the loop (see :func:`shielded_connect`).

asyncpg connections work on the event loop that opened them only, so each loop using a
store gets its own pool, committer and listener (``_OnLoop``): a store keeps working after
``asyncio.run`` ends, and from loops in other threads.

The schema is created and migrated on first use, under an advisory lock (two processes
starting at once take turns), and recorded in ``pepperpy_schema_version``. The URL option
``?schema=name`` keeps a store's tables in that PostgreSQL schema (created if missing), so
several independent stores can share one database.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import warnings
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from .._deps import require
from .._errors import ClosedError, ConfigurationError, StoreError
from .._loops import LoopShares
from ._pg_connect import (
    Progress,
    Watchdog,
    connection_lost,
    cut,
    in_transaction,
    pool_takes_hooks,
    reset,
    shielded_connect,
    tune,
    tune_socket,
)
from ._pg_options import (
    CLOSE_TIMEOUT,
    PostgresOptions,
    connect_timed_out,
    explain,
    no_answer,
    parse_options,
    parse_url,
)
from ._pg_schema import COLUMNS, READ_ALL, SCHEMA_LOCK, migrate, schema_change, write_group
from .base import (
    AppendResult,
    ExpectedVersion,
    LogPage,
    NewRecord,
    PendingAppend,
    Row,
    SnapshotRow,
    StoreBackend,
    StreamState,
    check_snapshot_version,
    log_page,
    redact_url,
    settle,
)

__all__ = [
    "CLOSE_TIMEOUT",
    "SCHEMA_LOCK",
    "PostgresBackend",
    "PostgresOptions",
    "Progress",
    "Watchdog",
    "connect_timed_out",
    "connection_lost",
    "no_answer",
    "parse_options",
    "parse_url",
    "schema_change",
    "shielded_connect",
    "tune_socket",
]

logger = logging.getLogger("pepperpy.event.store")

T = TypeVar("T")

CHANNEL = "pepperpy_events"
_POOL_SIZE = 8
#: most appends committed in one transaction
_MAX_GROUP = 512
_DEADLOCK_RETRIES = 3
#: SQLSTATE classes of errors caused by a value written, not by the connection or server
_REFUSALS = frozenset({"22", "23", "54"})
#: while the listener is down, waiters re-read this often
_RECONNECT_INTERVAL = 0.5
_LISTENER_NAME = "pepperpy-event-listener"
#: seconds ``close`` gives the committer to answer its callers after an abort
_ABORT_GRACE = 1.0

#: one caller's append waiting for its group commit, and the future it waits on
_Job = tuple[PendingAppend, "asyncio.Future[AppendResult]"]


class _OnLoop:
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
        "listener",
        "listening",
        "loop",
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
        self.pending: list[_Job] = []
        self.work = asyncio.Event()
        self.committer: asyncio.Task[None] | None = None
        self.listener: Any = None
        self.listening: asyncio.Task[None] | None = None
        self.changed: asyncio.Event | None = None
        self.connected = False
        #: why the connections were cut off on close (``abort``), once they were
        self.aborted: str | None = None
        #: the timer that aborts a close taking too long
        self.deadline: asyncio.TimerHandle | None = None
        #: connections being opened (see :func:`shielded_connect`)
        self.openings: set[asyncio.Future[Any]] = set()

    def wake(self) -> None:
        """Let every ``wait`` on this loop return (callers read again)."""
        changed = self.changed
        if changed is not None:
            self.changed = None
            changed.set()

    def stop(self, bound: float) -> None:
        """On close: wake the waiters, and the committer, which closes the connections.

        If that takes more than ``bound`` seconds (queued appends and the goodbye wait on
        a server that does not answer), :meth:`abort` cuts everything off.
        """
        self.wake()
        self.work.set()
        if self.deadline is None:
            reason = f"close() gave up waiting for PostgreSQL after {bound:g} s"
            self.deadline = self.loop.call_later(bound, self.abort, reason)

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
        group being written fails as its connection goes (``PostgresBackend._run`` says
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


class _Status:
    """What a store's background tasks (committers, listeners) need to know of it.

    They hold this, never the backend: a backend dropped without ``close()`` is then
    collected, and its finalizer (:func:`_dropped`) stops them as ``close()`` would.
    """

    __slots__ = ("closed", "head", "used")

    def __init__(self) -> None:
        self.closed = False
        #: next global position, as far as notifications told us
        self.head = 0
        #: some loop has used the store (it may hold connections there)
        self.used = False


def _dropped(loops: LoopShares[_OnLoop], status: _Status, where: str, bound: float) -> None:
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
        warnings.warn(
            f"unclosed EventStore on PostgreSQL {where} was dropped: call await "
            "store.close() when done with it (its connections are being closed now)",
            ResourceWarning,
            stacklevel=1,  # no caller's line to point at: this runs in the garbage collector
        )


class PostgresBackend(StoreBackend):
    """Events in PostgreSQL tables, written in commit order, followed via NOTIFY."""

    def __init__(self, url: str) -> None:
        self._asyncpg = require("asyncpg", extra="postgres", feature="the PostgreSQL store")
        self.url = url
        self._dsn, self.options = parse_options(url)
        self.schema = self.options.schema
        #: the NOTIFY channel: one per schema, so stores in other schemas do not wake us
        self.channel = CHANNEL if self.schema is None else f"{CHANNEL}_{self.schema}"
        self._settings = {} if self.schema is None else {"search_path": self.schema}
        asyncpg = self._asyncpg
        #: what asyncpg raises: server errors, client errors, its internal errors, sockets
        self._errors: tuple[type[Exception], ...] = (
            asyncpg.PostgresError,
            asyncpg.InterfaceError,
            asyncpg.InternalClientError,
            OSError,
        )
        #: what connecting raises besides: asyncpg refuses some URL values with ValueError
        self._connect_errors = (*self._errors, ValueError)
        #: connections, tasks and waiters of each loop using the store (see ``_OnLoop``)
        self._loops: LoopShares[_OnLoop] = LoopShares(_OnLoop)
        #: closed, and the head: shared with the tasks, which never hold the backend
        self._status = _Status()
        # dropped without close(): close the connections, with a warning; not at exit
        # (asyncio.run() has dropped them already when its loop ends)
        weakref.finalize(
            self, _dropped, self._loops, self._status, redact_url(url), self.options.close_timeout
        ).atexit = False

    @property
    def _closed(self) -> bool:
        return self._status.closed

    @_closed.setter
    def _closed(self, closed: bool) -> None:
        self._status.closed = closed

    def __repr__(self) -> str:
        return f"PostgresBackend({redact_url(self.url)!r})"

    # -- plumbing ---------------------------------------------------------------------

    def _here(self) -> _OnLoop:
        """The running loop's share of the store, made on its first use there."""
        on = self._loops.here()
        if on.committer is None:
            self._status.used = True
            on.committer = on.loop.create_task(
                _commit_loop(weakref.ref(self), on, self._status, self._loops, self._errors)
            )
        return on

    async def _pool(self, on: _OnLoop) -> Any:
        """The loop's pool, opened (and the schema migrated) on first use."""
        if on.aborted is not None:
            raise ClosedError(f"the event store was closed ({on.aborted})")
        if on.ready is None:
            on.ready = asyncio.ensure_future(self._open(on))
            on.ready.add_done_callback(_read_open)
        ready = on.ready
        since = _cancelling()  # what a task cleaning up after a cancellation counts
        try:
            return await asyncio.shield(ready)
        except asyncio.CancelledError:
            # the open was cancelled by ``abort``, not this caller
            if ready.cancelled() and on.aborted is not None and _cancelling() <= since:
                raise ClosedError(
                    f"the event store was closed ({on.aborted}) before it had connected"
                ) from None
            raise
        except BaseException:
            if ready.done() and on.ready is ready:
                on.ready = None  # try again next time (e.g. the server was down)
            raise

    async def _run(
        self,
        what: str,
        work: Callable[[Any, Progress], Awaitable[T]],
        on: _OnLoop | None = None,
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
        if self._closed and not closing:
            raise ClosedError("the event store is closed")
        if on is None:
            on = self._here()
        pool = await self._pool(on)
        for retry in (False, True):
            try:
                connection = await pool.acquire()
            except self._errors as exc:
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
                except self._errors as exc:
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
            if not again or (self._closed and not closing):
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
        the pool's ``reset`` (:func:`reset`) reads the outcome nobody waits for any
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
        on: _OnLoop,
        *,
        closing: bool,
        progress: Progress | None = None,
        lost: bool = False,
        timed_out: bool = False,
    ) -> StoreError | ClosedError:
        reason = self._reason(exc, timed_out=timed_out)
        if lost and progress is not None and progress.committing:
            done, advice = _UNKNOWN.get(what, ("it was done", "look before doing it again"))
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
        if self._closed and not closing:
            return ClosedError("the event store is closed")
        return StoreError(f"PostgreSQL {what} failed: {reason}")

    async def _open(self, on: _OnLoop) -> Any:
        """Open the loop's pool and migrate the schema on its first connection.

        The pool keeps no connection open on its own (``min_size=0``): one it had to
        keep would be reconnected in the background whenever one is cut off, also
        during a partition, where nobody waits for it.

        If that connection breaks, or stays silent past ``command_timeout``, during the
        setup (a restart, a failover, an admin's ``pg_terminate_backend``), the setup is
        done once more on a new connection, as :meth:`_run` does for other work. That is
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
                except self._errors as exc:
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

    async def _connect(self, on: _OnLoop) -> Any:
        """A new pool for the running loop (it connects nothing yet).

        Its connections are opened through :func:`shielded_connect` and reset by
        :func:`reset` (asyncpg 0.30 and later take both functions), so a caller
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

    # -- the contract -----------------------------------------------------------------

    async def append(
        self, stream: str, records: Sequence[NewRecord], expected_version: ExpectedVersion
    ) -> AppendResult:
        """Queue the append for the loop's next group commit and wait for its outcome."""
        if self._closed:
            raise ClosedError("the event store is closed")
        on = self._here()
        future: asyncio.Future[AppendResult] = on.loop.create_future()
        on.pending.append((PendingAppend(stream, records, expected_version), future))
        on.work.set()
        return await future

    async def _commit_jobs(self, on: _OnLoop, jobs: list[_Job]) -> None:
        """Commit a group of appends and resolve every caller's future."""
        try:
            await self._commit_split(on, jobs)
        except asyncio.CancelledError:  # the loop is shutting down; the callers may not be
            for _, future in jobs:
                settle(
                    future,
                    StoreError(
                        "PostgreSQL append: the store's committer was cancelled (its event "
                        "loop is shutting down) while writing it, so whether it was written "
                        f"is unknown; {_UNKNOWN['append'][1]}"
                    ),
                )
            raise
        except Exception as exc:  # the connection or the server is gone
            for _, future in jobs:
                settle(future, exc)  # those already resolved are left alone

    async def _commit_split(self, on: _OnLoop, jobs: list[_Job]) -> None:
        """Commit ``jobs`` in one transaction; if PostgreSQL refuses a value, only its
        append fails.

        Such a refusal rolls the whole transaction back, writing nothing, so the group is
        committed again in two halves, in order (positions stay in queue order and later
        appends see the earlier ones, as in one group), and so on down to the culprit.
        This costs nothing while no write fails. Other failures (a lost connection, a
        server gone) are raised, failing every caller not answered yet.
        """
        try:
            outcomes = await self._commit_group(on, [append for append, _ in jobs])
        except Exception as exc:
            if not self._refused(exc):
                raise
            if len(jobs) == 1:
                settle(jobs[0][1], exc)
                return
            half = len(jobs) // 2
            for part in (jobs[:half], jobs[half:]):
                waiting = [job for job in part if not job[1].cancelled()]
                if waiting:
                    await self._commit_split(on, waiting)
            return
        for (_, future), outcome in zip(jobs, outcomes, strict=True):
            settle(future, outcome)

    def _refused(self, exc: Exception) -> bool:
        """Whether PostgreSQL (or asyncpg's encoder) refused a value some append holds.

        That is an error of SQLSTATE class 22 (data exception: a NUL in a text, a number
        out of range, text that is no UTF-8), 23 (integrity constraint) or 54 (program
        limit exceeded: a key too long for its index).
        """
        cause = exc.__cause__
        if not isinstance(cause, self._asyncpg.PostgresError):
            return False
        return str(getattr(cause, "sqlstate", ""))[:2] in _REFUSALS

    async def _commit_group(
        self, on: _OnLoop, appends: list[PendingAppend]
    ) -> list[AppendResult | BaseException]:
        write = functools.partial(write_group, self.channel, appends)

        async def work(connection: Any, progress: Progress) -> list[AppendResult | BaseException]:
            return await in_transaction(connection, progress, write)

        for attempt in range(_DEADLOCK_RETRIES):
            try:
                return await self._run("append", work, on, closing=True)
            except StoreError as exc:
                deadlock = isinstance(exc.__cause__, self._asyncpg.DeadlockDetectedError)
                if not deadlock or attempt == _DEADLOCK_RETRIES - 1:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def read_stream(
        self, stream: str, start: int | None, backwards: bool, limit: int
    ) -> list[Row]:
        if backwards:
            sql = (
                f"SELECT {COLUMNS} FROM pepperpy_events WHERE stream = $1 AND position <= $2 "
                "AND position >= (SELECT first_visible FROM pepperpy_streams WHERE name = $1) "
                "ORDER BY position DESC LIMIT $3"
            )
            begin = (1 << 62) if start is None else start
        else:
            sql = (
                f"SELECT {COLUMNS} FROM pepperpy_events WHERE stream = $1 AND position >= $2 "
                "AND position >= (SELECT first_visible FROM pepperpy_streams WHERE name = $1) "
                "ORDER BY position LIMIT $3"
            )
            begin = 0 if start is None else start
        rows: list[Row] = await self._run(
            "read_stream", lambda connection, _: connection.fetch(sql, stream, begin, limit)
        )
        return rows

    async def read_all(self, from_position: int, limit: int) -> LogPage:
        scanned = await self._run(
            "read_all", lambda connection, _: connection.fetch(READ_ALL, from_position, limit)
        )
        return log_page(scanned, from_position, limit)

    async def stream_state(self, stream: str) -> StreamState | None:
        row = await self._run(
            "stream_state",
            lambda connection, _: connection.fetchrow(
                "SELECT next_position, first_visible, deleted FROM pepperpy_streams "
                "WHERE name = $1",
                stream,
            ),
        )
        return None if row is None else StreamState(row[0], row[1], row[2])

    async def stream_names(self) -> list[str]:
        rows = await self._run(
            "stream_names",
            lambda connection, _: connection.fetch(
                "SELECT name FROM pepperpy_streams WHERE NOT deleted "
                'AND next_position > first_visible ORDER BY name COLLATE "C"'
            ),
        )
        return [row[0] for row in rows]

    async def delete_stream(self, stream: str) -> bool:
        # the stream row is locked before the snapshot goes: a save_snapshot holding it
        # commits first and its snapshot is deleted here, or waits and finds it deleted
        async def delete(connection: Any) -> bool:
            status = await connection.execute(
                "UPDATE pepperpy_streams SET first_visible = next_position, deleted = true "
                "WHERE name = $1 AND NOT deleted AND next_position > first_visible",
                stream,
            )
            await connection.execute("DELETE FROM pepperpy_snapshots WHERE stream = $1", stream)
            return bool(status != "UPDATE 0")

        return await self._run(
            "delete_stream",
            lambda connection, progress: in_transaction(connection, progress, delete),
        )

    async def save_snapshot(self, stream: str, snapshot: SnapshotRow) -> None:
        # FOR SHARE: until this commits, no append or delete of the stream can change it
        async def save(connection: Any) -> None:
            row = await connection.fetchrow(
                "SELECT next_position, first_visible, deleted FROM pepperpy_streams "
                "WHERE name = $1 FOR SHARE",
                stream,
            )
            state = None if row is None else StreamState(row[0], row[1], row[2])
            check_snapshot_version(stream, state, snapshot.version)
            await connection.execute(
                "INSERT INTO pepperpy_snapshots (stream, version, state, taken_at) "
                "VALUES ($1, $2, $3, $4) ON CONFLICT (stream) DO UPDATE SET "
                "version = excluded.version, state = excluded.state, "
                "taken_at = excluded.taken_at",
                stream,
                snapshot.version,
                snapshot.state,
                snapshot.taken_at,
            )

        await self._run(
            "save_snapshot",
            lambda connection, progress: in_transaction(connection, progress, save),
        )

    async def load_snapshot(self, stream: str) -> SnapshotRow | None:
        row = await self._run(
            "load_snapshot",
            lambda connection, _: connection.fetchrow(
                "SELECT version, state, taken_at FROM pepperpy_snapshots WHERE stream = $1",
                stream,
            ),
        )
        return None if row is None else SnapshotRow(row[0], row[1], row[2])

    # -- live wake-ups ----------------------------------------------------------------

    async def wait(self, position: int) -> None:
        if self._closed or self._status.head > position:
            return
        on = self._here()
        if on.listening is None:
            # start listening; events committed before LISTEN took effect are found by
            # the caller's next read, so return at once
            on.listening = asyncio.ensure_future(
                _listen(
                    on,
                    self._status,
                    self._asyncpg,
                    self._dsn,
                    self.options,
                    self._errors,
                    self.channel,
                )
            )
            await self._wait_changed(on, _RECONNECT_INTERVAL)
            return
        await self._wait_changed(on, None if on.connected else _RECONNECT_INTERVAL)

    async def _wait_changed(self, on: _OnLoop, at_most: float | None) -> None:
        if on.changed is None:
            on.changed = asyncio.Event()
        changed = on.changed
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(at_most):
                await changed.wait()

    async def close(self) -> None:
        """Close the store: every loop's connections close once its queued appends are in.

        Bounded: if the server does not answer, after ``options.close_timeout`` seconds
        the connections are cut off (``_OnLoop.abort``); appends still queued then fail
        with :class:`ClosedError`, the one being committed with :class:`StoreError` if
        its ``COMMIT`` may have been sent. Cancelling ``close`` does the same at once.
        """
        if self._closed:
            # a close already under way on this loop: wait for it as it waits (bounded), so
            # that every close() returns only once the store is closed; cancelling this
            # wait leaves that close alone
            on = self._loops.get(asyncio.get_running_loop())
            committer = None if on is None else on.committer
            if committer is not None and not committer.done():
                await asyncio.wait((committer,), timeout=self.options.close_timeout + _ABORT_GRACE)
            return
        self._closed = True
        bound = self.options.close_timeout
        here = asyncio.get_running_loop()
        with self._loops.lock:
            for on in self._loops.others(here):
                if not on.stop_from_elsewhere(bound):
                    self._loops.leave(on)  # nothing runs there any more: drop them now
        mine = self._loops.get(here)
        if mine is None:
            return
        since = _cancelling()  # what a task cleaning up after a cancellation counts
        mine.stop(bound)
        committer = mine.committer
        if committer is None:
            return
        try:
            # appends already queued are still committed, within the bound; past it the
            # abort fails what is left at once, but a connection being opened may take
            # connect_timeout to give up: its append is answered then, in the background
            await asyncio.wait((committer,), timeout=bound + _ABORT_GRACE)
        except asyncio.CancelledError:
            if _cancelling() > since:
                mine.abort("close() was cancelled")
            raise
        if committer.done() and not committer.cancelled():
            committer.result()  # a bug in it is not swallowed


async def _commit_loop(
    backend: weakref.ref[PostgresBackend],
    on: _OnLoop,
    status: _Status,
    loops: LoopShares[_OnLoop],
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

    It holds the backend only while it commits a group, so a backend dropped without
    ``close()`` is collected while this waits, and its finalizer stops it (``_dropped``).
    """
    try:
        while True:
            if not on.pending:
                if status.closed or backend() is None:
                    break
                on.work.clear()
                await on.work.wait()
                continue
            group, on.pending = on.pending[:_MAX_GROUP], on.pending[_MAX_GROUP:]
            # callers cancelled before their write started are not written
            group = [job for job in group if not job[1].cancelled()]
            if not group:
                continue
            owner = backend()
            if owner is None:  # dropped: its callers are gone too (they held it)
                closed = ClosedError("the event store is closed")
                for _, future in group:
                    settle(future, closed)
                continue
            await owner._commit_jobs(on, group)
            del owner  # not held while waiting for the next append
    except asyncio.CancelledError:
        on.committer = None
        with loops.lock:
            loops.leave(on)
        raise
    await _close_connections(on, loops, errors)


async def _close_connections(
    on: _OnLoop, loops: LoopShares[_OnLoop], errors: tuple[type[Exception], ...]
) -> None:
    """Close the loop's connections gracefully (the committer's last act).

    Bounded by ``on.deadline`` (see ``close``), which cuts them off instead.
    """
    on.wake()
    if on.listening is not None:
        on.listening.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await on.listening
    if on.listener is not None:
        try:
            await on.listener.close()
        except errors:
            on.listener.terminate()
    if on.ready is not None and not on.ready.done():
        await asyncio.wait((on.ready,))  # an open in progress finishes, then closes
    if on.openings:  # connections callers gave up on, ended within connect_timeout
        await asyncio.wait(set(on.openings))
    if on.pool is not None:
        try:
            await on.pool.close()
        except errors:  # a connection the server dropped may fail to say goodbye
            on.pool.terminate()
    if on.deadline is not None:
        on.deadline.cancel()
    with loops.lock:
        loops.forget(on)


def _notified(
    status: _Status, on: _OnLoop, connection: Any, pid: int, channel: str, payload: str
) -> None:
    with contextlib.suppress(ValueError):
        status.head = max(status.head, int(payload))
    on.wake()


async def _listen(
    on: _OnLoop,
    status: _Status,
    asyncpg: Any,
    dsn: str,
    options: PostgresOptions,
    errors: tuple[type[Exception], ...],
    channel: str,
) -> None:
    """Keep one LISTEN connection up for the loop; wake every waiter after each
    (re)connect.

    A connection that goes silent (a partition, a NAT box that forgot it) would
    never say so: it is pinged after every ``listener_ping`` seconds and replaced if
    the answer takes as long again. Until a new one listens, waiters re-read every
    ``_RECONNECT_INTERVAL`` seconds. It never holds the backend (see ``_Status``).
    """
    while not status.closed:
        dropped = asyncio.Event()
        try:
            connection = await shielded_connect(
                on.openings,
                asyncpg.connect,
                dsn,
                timeout=options.connect_timeout,
                server_settings={"application_name": _LISTENER_NAME},
            )
        except errors:
            await asyncio.sleep(_RECONNECT_INTERVAL)
            continue
        try:
            tune_socket(connection, options.command_timeout)
            connection.add_termination_listener(_on_drop(dropped))
            with Watchdog(connection, options.command_timeout):
                await connection.add_listener(channel, functools.partial(_notified, status, on))
            on.listener = connection
            on.connected = True
            on.wake()  # anything committed while not listening is re-read now
            await _watch(connection, dropped, options.listener_ping)
        except errors as exc:
            if not status.closed:
                logger.warning(
                    "PostgreSQL: the LISTEN connection failed (%s); reconnecting",
                    explain(options, exc),
                )
        finally:
            on.connected = False
            on.listener = None
            if not connection.is_closed():
                connection.terminate()
        on.wake()


async def _watch(connection: Any, dropped: asyncio.Event, every: float) -> None:
    """Return when ``dropped`` is set (the connection ended); meanwhile ping it after
    ``every`` seconds of waiting, and cut it off if no answer comes within ``every``."""
    while True:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(every):
                await dropped.wait()
        if dropped.is_set():
            return
        watchdog = Watchdog(connection, every)
        try:
            with watchdog:
                await connection.fetchval("SELECT 1")
        except Exception as exc:
            if watchdog.fired:
                raise TimeoutError(f"it did not answer a ping within {every:g} s") from exc
            raise


def _read_open(ready: asyncio.Future[Any]) -> None:
    """Read how the store's open ended: its callers may all have stopped waiting.

    A caller cancelled meanwhile stops waiting at once, and ``asyncio.shield`` then no
    longer watches the open: if it failed with nobody waiting any more (and no call
    after it), its failure was reported as 'Task exception was never retrieved'.
    Callers still waiting get the failure themselves.
    """
    if not ready.cancelled() and ready.exception() is not None:
        logger.debug("PostgreSQL: opening the store failed: %r", ready.exception())


def _cancelling() -> int:
    """How many cancellations of the running task are under way (0 outside a task).

    A call takes it when it begins and compares it with that: a task cleaning up after a
    cancellation (``finally:``, ``except CancelledError:``) counts it still, and a call
    made there was not cancelled; only a cancellation that comes during the call is its
    own (not merely another's, such as an ``abort`` cancelling the open it waits for).
    """
    task = asyncio.current_task()
    return 0 if task is None else task.cancelling()


#: for each write: what may have happened when its outcome is unknown, and what to do
_UNKNOWN = {
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


def _current_task(loop: asyncio.AbstractEventLoop) -> asyncio.Task[Any] | None:
    """The task running on ``loop`` now, if any (``None`` when it is not running)."""
    try:
        return asyncio.current_task(loop)
    except RuntimeError:
        return None


def _on_drop(dropped: asyncio.Event) -> Any:
    """A termination callback for asyncpg that sets ``dropped``."""

    def callback(connection: Any) -> None:
        dropped.set()

    return callback
