"""The PostgreSQL checkpoint store: its own ``asyncpg`` connection to the event store's
database, with the event store's bounded attempts.

Its connections, one per event loop, and what lends them to the attempts are in
:mod:`._checkpoints_pg_loops`; the table's setup in :mod:`._checkpoints_pg_table`; the
work done inside its transactions in :mod:`._checkpoints_pg_work`.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from . import _json
from ._checkpoint_base import (
    TABLE,
    Checkpoint,
    CheckpointStore,
    _conflict,
    _encode_state,
    _listed,
    check_checkpoint_name,
    check_checkpoint_save,
    logger,
    matches,
    new_revision,
)
from ._checkpoints_pg_loops import _dropped, _OnLoop, _Openings, _Turns
from ._checkpoints_pg_table import _set_up
from ._checkpoints_pg_work import Yours, always, in_transaction, row_of, set_position
from ._deps import require
from ._errors import StoreError
from ._loops import LoopShares
from .store._pg_attempts import Attempts, Failed
from .store._pg_schema import SCHEMA_LOCK
from .store.base import redact_url
from .store.postgres import Progress, parse_options

__all__ = ["PostgresCheckpointStore", "opened_by"]

T = TypeVar("T")

#: the lock ``save_within`` and ``delete_within`` take for one checkpoint name
_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))"


class PostgresCheckpointStore(CheckpointStore):
    """Checkpoints in a table of a PostgreSQL database, via its own asyncpg connection.

    One connection per event loop using the store, opened on first use there: the store
    keeps working after ``asyncio.run`` ends (the ended loop's connection is dropped as
    the loop shuts down) and from loops in other threads. Statements on one loop take
    turns on its connection.

    The event store's URL options apply: each statement waits at most
    ``command_timeout`` seconds for the server, then its connection is cut off as lost;
    connecting takes at most ``connect_timeout``. A connection that was lost (the server
    terminated its backend or restarted, a partition) is dropped, and the next statement
    opens a new one. A call that finds its connection lost is tried once more on a new
    one at once if nothing can have been written: a ``load``, the table setup of a
    loop's first call, or a ``save`` or ``delete`` whose statement asyncpg never sent
    (told as the event store tells a ``COMMIT`` never sent, by
    :class:`~pepperpy.event.store.postgres.Progress`). A ``save`` or ``delete`` whose
    statement was sent is not: it may have committed, so it fails with
    :class:`StoreError` saying the outcome is unknown (``written`` None), and the caller
    decides (a replay or projection loads the checkpoint again to see). A failure whose
    statement was never sent, or was answered with the server's error (autocommit rolled
    it back), says ``written`` False.

    The URL's ``?schema=name`` puts the table in that schema, as it does the event
    store's. The table is created by the first write (``save``, ``save_within``,
    ``delete_within``, ``prepare``) under the event store's schema lock
    (:func:`~pepperpy.event.store.postgres.schema_change`), so stores opened at once in
    several processes on a fresh database do not collide in PostgreSQL's catalog. Reads
    create nothing: on a database without the table (or its schema) ``names()`` is
    empty, ``load()`` None and ``delete()`` False, so a role that may only read (no
    ``CREATE`` on the schema) reads none instead of failing; a table another process
    creates meanwhile is read as soon as it is committed.

    A state is kept as the JSON text the library wrote (``bytea``, as event data is) and
    decoded as on SQLite, so it loads back exactly as saved: key order, ``-0.0``, floats
    and big integers. A table from before, whose state is ``jsonb`` (which reorders keys),
    is converted on first use under the same lock (see
    :func:`~._checkpoints_pg_table._set_up`).
    """

    def __init__(self, url: str) -> None:
        self.url = url
        # a bad port or host list is refused here, before connecting; like the event
        # store, ?schema=name keeps the table in that PostgreSQL schema
        self._dsn, self.options = parse_options(url)
        self.schema = self.options.schema
        self._settings = {} if self.schema is None else {"search_path": self.schema}
        self._loops: LoopShares[_OnLoop] = LoopShares(_OnLoop)
        #: the table, qualified with the schema it was found in when the first connection
        #: was set up: statements never depend on a search_path that a table projection's
        #: own SQL may have changed on the connection (see
        #: :func:`~._checkpoints_pg_table._set_up`)
        self._table = TABLE
        #: the bounded attempts on asyncpg (see :meth:`_attempts`)
        self._driver: Attempts | None = None
        #: its repr, and what opened it (see :func:`opened_by`), for the warning given if
        #: it is dropped with connections open (as text: the finalizer cannot reach it)
        self._label = [repr(self), ""]
        weakref.finalize(self, _dropped, self._loops, self._label).atexit = False

    def __repr__(self) -> str:
        return f"PostgresCheckpointStore({redact_url(self.url)!r})"

    #: what a failure to open a connection (and set the table up on it) says first
    _cannot_open = "cannot open PostgreSQL checkpoint store"

    def _attempts(self) -> Attempts:
        """The bounded attempts on asyncpg (shared with the event store), made on first
        use: asyncpg is imported then."""
        if self._driver is None:
            asyncpg = require("asyncpg", extra="postgres", feature="a PostgreSQL checkpoint store")
            self._driver = Attempts(asyncpg, self.options, logger)
        return self._driver

    async def _run(
        self,
        work: Callable[[Any, Progress], Awaitable[T]],
        *,
        write: str = "",
        create: bool = False,
        may_retry: Callable[[], bool] | None = None,
    ) -> T:
        """Run ``work(connection, progress)`` on this loop's connection, bounded, and
        done once more where that is safe (:meth:`Attempts.run`); driver errors become
        :class:`StoreError`.

        A write sends its statement under ``progress.commit()``. A lost connection, or
        one that did not answer within ``command_timeout``, is cut off (the next
        statement opens a new one), and if nothing can have been written (a read, or a
        write whose statement asyncpg never sent) the work is done once more on a new
        connection right away. ``write`` names what a write was doing: if its statement
        may have been sent, whether that happened is unknown, and the error says so. A
        caller cancelled mid-statement has the connection cut off, so that takes effect
        at once (asyncpg would otherwise wait for a cancel request first). With
        ``create`` the table is created first if it is missing (reads create nothing).
        """
        if create:
            await self._create_table()

        def failure(failed: Failed) -> StoreError:
            if failed.unknown and write:
                error = StoreError(
                    f"PostgreSQL checkpoint store: {failed.how} while it was {write}, so "
                    f"whether that happened is unknown ({failed.reason}); load the "
                    "checkpoint to see"
                )
            else:
                error = StoreError(f"PostgreSQL checkpoint store failed: {failed.reason}")
            error.written = failed.written  # None only if its statement may have committed
            return error

        return await self._attempts().run(
            work,
            _Turns(self),
            what="PostgreSQL checkpoint store",
            failure=failure,
            may_retry=may_retry or always,
        )

    async def _open(self, on: _OnLoop) -> Any:
        """A new connection for this loop, with the table set up on it.

        If the connection breaks, or stays silent past ``command_timeout``, during the
        setup (a restart, a failover, ``pg_terminate_backend``), the setup is done once
        more on a new connection, as the event store does its own
        (:meth:`Attempts.set_up`): creating the table if it is missing is safe to repeat.
        """
        where = redact_url(self.url)

        async def set_up(connection: Any) -> None:
            # a missing table is not created here: reads find none, the first write makes it
            self._table, on.ready = await _set_up(connection, self.schema, create=False)

        return await self._attempts().set_up(
            set_up,
            _Openings(self, on),
            what="PostgreSQL checkpoint store setup",
            failure=lambda reason: StoreError(f"{self._cannot_open} at {where}: {reason}"),
        )

    async def _create_table(self) -> None:
        """Create the table before a write, if this loop's connection found it missing
        when it was opened: on the loop's connection, as its setup is done (bounded, once
        more on a new connection if the connection is lost; a failure says the store
        cannot be opened). Safe to repeat, and under the schema lock: another process
        may be creating it at the same time."""
        on = self._loops.here()
        if on.ready:
            return
        where = redact_url(self.url)

        async def create(connection: Any) -> None:
            if not on.ready:  # a call before this one may have made it meanwhile
                self._table, on.ready = await _set_up(connection, self.schema)

        await self._attempts().set_up(
            create,
            _Turns(self),
            what="PostgreSQL checkpoint store setup",
            failure=lambda reason: StoreError(f"{self._cannot_open} at {where}: {reason}"),
        )

    def _missing(self, error: Exception) -> bool:
        """Whether ``error`` is PostgreSQL saying the table (or its schema) is not there:
        a read on a database where nothing was saved yet."""
        asyncpg = self._attempts().asyncpg
        return isinstance(error, (asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError))

    async def load(self, name: str) -> Checkpoint | None:
        check_checkpoint_name(name)

        async def fetch(connection: Any, _: Progress) -> Any:
            try:
                return await connection.fetchrow(
                    f"SELECT position, state, updated_at, revision FROM {self._table} "
                    "WHERE name = $1",
                    name,
                )
            except Exception as exc:
                if self._missing(exc):
                    return None
                raise

        row = await self._run(fetch)
        if row is None:
            return None
        state = row["state"]  # the JSON text saved, byte for byte, decoded as on SQLite
        return Checkpoint(
            name,
            row["position"],
            None if state is None else _json.loads(state),
            row["updated_at"],
            row["revision"],
        )

    async def save(
        self,
        name: str,
        position: int,
        state: Any = None,
        *,
        previous: int | None,
        revision: str | None = None,
    ) -> str:
        # the JSON text itself (bytea), not jsonb: jsonb would reorder the keys and drop a
        # float's sign or form, so the state would not load back as it was committed
        check_checkpoint_save(name, position, previous, revision)
        data = None if state is None else _encode_state(state)
        written = new_revision()

        async def compare_and_set(connection: Any, progress: Progress) -> tuple[bool, int | None]:
            with progress.commit():
                saved = await set_position(
                    connection, self._table, name, position, data, previous, revision, written
                )
            if saved:
                return True, None
            progress.committing = False  # it changed nothing: what follows only reads
            return False, (await row_of(connection, self._table, name))[0]

        saved, actual = await self._run(
            compare_and_set,
            write=f"saving checkpoint {name!r} at position {position}",
            create=True,
        )
        if not saved:
            raise _conflict(name, previous, actual)
        return written

    async def delete(self, name: str) -> bool:
        check_checkpoint_name(name)

        async def delete(connection: Any, progress: Progress) -> str:
            try:
                with progress.commit():
                    status: str = await connection.execute(
                        f"DELETE FROM {self._table} WHERE name = $1", name
                    )
            except Exception as exc:
                if not self._missing(exc):
                    raise
                progress.committing = False  # refused before anything was written
                return "DELETE 0"  # no table: nothing was saved, and nothing is made
            return status

        status = await self._run(delete, write=f"deleting checkpoint {name!r}")
        return bool(status.endswith(" 1"))

    async def names(self) -> list[str]:
        async def fetch(connection: Any, _: Progress) -> list[Any]:
            try:
                rows: list[Any] = await connection.fetch(f"SELECT name FROM {self._table}")
            except Exception as exc:
                if self._missing(exc):
                    return []
                raise
            return rows

        rows = await self._run(fetch)
        return _listed(row["name"] for row in rows)

    # -- tables of your own, committed with a checkpoint (TableProjection's) ------------

    async def save_within(
        self,
        name: str,
        position: int,
        *,
        previous: int | None,
        work: Callable[[Any], Awaitable[None]],
        revision: str | None = None,
    ) -> str:
        """Save ``position`` for ``name`` (no state) in one transaction with your writes;
        return the revision written.

        The transaction first takes a lock of ``name``'s own (an advisory transaction
        lock: a second runner waits there, not in your tables) and compares the saved
        position with ``previous`` (and the revision with ``revision``, if given), as
        :meth:`save` does; only if it holds is ``await
        work(connection)`` run, with this loop's asyncpg connection, and the position
        written after it. Your rows and the checkpoint commit together or not at all.

        What your writes cause is raised as asyncpg raised it, nothing written: an error
        of ``work``'s; a constraint checked at ``COMMIT`` (a deferred foreign key); and
        ``InFailedSQLTransactionError`` when ``work`` caught a statement's error (which
        aborts a PostgreSQL transaction: wrap such a statement in ``async with
        connection.transaction():``, a savepoint). ``work`` outlasting the URL's
        ``command_timeout`` (the transaction's bound) raises :class:`TimeoutError`. A
        connection lost before the ``COMMIT`` was sent has it all done once more on a new
        connection (``work`` runs again, its first effects rolled back); one lost after
        raises :class:`StoreError` with ``written`` None, as :meth:`save` does. ``work``
        must not ``COMMIT`` or ``ROLLBACK``: that raises :class:`RuntimeError`, and what
        it committed stays, without the position.
        """
        check_checkpoint_save(name, position, previous, revision)
        yours = Yours(self.options.command_timeout)
        written = new_revision()

        async def transact(connection: Any, progress: Progress) -> tuple[bool, int | None]:

            async def both() -> tuple[bool, tuple[bool, int | None]]:
                await connection.execute(_LOCK, f"{self._table}:{name}")
                actual, actual_revision = await row_of(connection, self._table, name)
                if not matches(previous, revision, actual, actual_revision):
                    return False, (False, actual)
                await yours.run(work, connection)
                try:
                    saved = await set_position(
                        connection, self._table, name, position, None, previous, revision, written
                    )
                except self._attempts().asyncpg.InFailedSQLTransactionError as exc:
                    raise yours.caught(exc) from None
                return saved, (
                    saved,
                    None if saved else (await row_of(connection, self._table, name))[0],
                )

            return await in_transaction(connection, progress, both, yours)

        saved, actual = await yours.outcome(
            self._run(
                transact,
                write=f"saving checkpoint {name!r} at position {position}",
                create=True,
                may_retry=yours.may_retry,
            )
        )
        if not saved:
            raise _conflict(name, previous, actual)
        return written

    async def delete_within(self, name: str, work: Callable[[Any], Awaitable[None]]) -> bool:
        """:meth:`delete` with ``await work(connection)`` in the same transaction (emptying
        the tables a checkpoint was for, say), under the lock :meth:`save_within` takes;
        True if there was a checkpoint. Errors as :meth:`save_within`'s."""
        check_checkpoint_name(name)
        yours = Yours(self.options.command_timeout)

        async def transact(connection: Any, progress: Progress) -> bool:

            async def both() -> tuple[bool, bool]:
                await connection.execute(_LOCK, f"{self._table}:{name}")
                await yours.run(work, connection)
                try:
                    status: str = await connection.execute(
                        f"DELETE FROM {self._table} WHERE name = $1", name
                    )
                except self._attempts().asyncpg.InFailedSQLTransactionError as exc:
                    raise yours.caught(exc) from None
                return True, status.endswith(" 1")

            return await in_transaction(connection, progress, both, yours)

        return await yours.outcome(
            self._run(
                transact,
                write=f"deleting checkpoint {name!r}",
                create=True,
                may_retry=yours.may_retry,
            )
        )

    async def prepare(self, work: Callable[[Any], Awaitable[None]]) -> None:
        """Run ``await work(connection)`` in a transaction of its own, for ``CREATE TABLE
        IF NOT EXISTS`` and the like (PostgreSQL's DDL is transactional). Stores set up at
        once in several processes take turns (under the event store's schema lock):
        ``IF NOT EXISTS`` alone is not safe against a concurrent creator. Settings the
        work changes with ``SET`` are reset afterwards, so they never last past it on
        the store's connection (use ``SET LOCAL`` in the transactions that need them).
        Errors as :meth:`save_within`'s."""
        yours = Yours(self.options.command_timeout)

        async def transact(connection: Any, progress: Progress) -> None:

            async def alone() -> tuple[bool, None]:
                await connection.execute("SELECT pg_advisory_xact_lock($1)", SCHEMA_LOCK)
                await yours.run(work, connection)
                return True, None

            await in_transaction(connection, progress, alone, yours)
            await connection.execute("RESET ALL")

        await yours.outcome(
            self._run(transact, write="setting up", create=True, may_retry=yours.may_retry)
        )

    async def close(self) -> None:
        """Close this loop's connection; drop those of other loops (threadsafe).

        Bounded: a statement under way may finish first (a save is not cut off unseen),
        within ``options.close_timeout`` seconds (10, or ``command_timeout`` if smaller);
        past that, or on a failure, the connection is cut off (a save still under way
        then says its outcome is unknown). The idle connection is then closed as libpq
        closes one: the Terminate message sent, the socket closed, no wait for the
        server's answer, which a partition holds back (this waited the whole bound for
        it). A connection still being opened is not waited for: one a call under way
        waits for gets 1 s (``OPENING_GRACE``, or the bound if smaller), one a cancelled
        caller left none; then it is abandoned (cancelled, its socket closed), and the
        calls that were to use it, or waited for their turn on it, fail with
        :class:`ClosedError` (nothing written), as on the event store. Never raises for
        a connection that cannot close; cancelled, it cuts it off at once. The store
        stays usable: its next statement opens a connection again.
        """
        here = asyncio.get_running_loop()
        with self._loops.lock:
            shares = self._loops.take_all()
        mine = None
        for on in shares:
            if on.loop is here:
                mine = on
                continue
            try:  # dropped on its own loop, which closes the socket properly
                on.loop.call_soon_threadsafe(on.abandon)
            except RuntimeError:  # that loop is closed
                on.abandon()
        if mine is None:
            return
        keeper, mine.keeper = mine.keeper, None
        if keeper is not None:
            keeper.cancel()
        # a call under way may be opening the connection: it gets OPENING_GRACE (a healthy
        # server answers in milliseconds), then its opening is abandoned (ClosedError)
        grace = mine.openings.abandon_later(here, self.options.close_timeout)
        try:
            async with asyncio.timeout(self.options.close_timeout):
                async with mine.lock:  # a statement under way finishes first
                    if mine.connection is not None:
                        mine.connection.terminate()  # it sends Terminate, then lets go
                    # no call waits for a connection now: those still being opened were
                    # left by cancelled callers, and are abandoned at once
                    mine.openings.abandon("close() does not wait for connections being opened")
                if mine.openings:  # cancelled: each ends within a loop iteration or two
                    await asyncio.wait(set(mine.openings))
        except Exception:  # it did not close in time, or failed to: cut off below
            pass
        finally:
            grace.cancel()
            mine.openings.abandon("close() gave up waiting for PostgreSQL")
            connection, mine.connection = mine.connection, None
            if connection is not None and not connection.is_closed():
                connection.terminate()


def opened_by(store: CheckpointStore, parent: str) -> None:
    """Say that ``store`` is closed by ``parent`` (``"EventReplay"``), which opened it,
    so the warning given if it is dropped open names what the user should have closed."""
    if isinstance(store, PostgresCheckpointStore):
        store._label[1] = parent
