"""Table projections: read models kept in tables of your own, exactly once per event.

A :class:`Projection` keeps its state as one JSON document, rewritten at every commit:
right for counters and small read models, too slow for one of many thousand rows. A
:class:`TableProjection` hands its handlers the database connection instead, inside the
transaction that also moves its checkpoint: each batch of events changes the user's
tables and the position *together*, so a crash, a lost connection or a failing handler
leaves tables and position consistent, and a resumed run applies exactly the events
whose effect was not committed (what eventsourcing calls tracking records; Marten's
async daemon keeps its progress the same way. Not Marten's *inline* projections, which
commit with the append: a table projection lags the log, as any subscriber does).

The connection is the state store's own: on SQLite a ``sqlite3.Connection`` (handlers
are plain functions, run on the store's worker thread inside ``BEGIN IMMEDIATE``), on
PostgreSQL an ``asyncpg`` connection (handlers are ``async``, inside a transaction). The
SQL is the user's, in their database's dialect. Everything else (turns, batches,
``follow``, outages, ``serve``) is :class:`Projection`'s, unchanged.
"""

from __future__ import annotations

import inspect
import sqlite3
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

from ._checkpoints_pg import PostgresCheckpointStore
from ._checkpoints_sqlite import SQLiteCheckpointStore
from ._errors import ConfigurationError, ReplayError
from ._event import Event
from ._handlers import check_handler, is_async_callable
from ._loops import settled
from ._projection import Projection
from ._projection_handlers import Apply, ProjectionHandlers
from ._replay import Patterns, ReplayReport, describe_checkpoints, handler_name
from ._replay_waits import run_in

if TYPE_CHECKING:
    from ._checkpoints import CheckpointStore
    from .store import EventStore

__all__ = ["TableProjection"]

#: a batch waiting for its commit: each event with the handlers it is applied with
Pending = list[tuple[tuple[Apply, ...], Event]]
#: a batch being committed
Batch = tuple[tuple[tuple[Apply, ...], Event], ...]


class TableProjection(Projection):
    """A read model in tables of your own, changed with its position in one transaction.

    Handlers are ``handler(db, event)``: ``db`` is the state store's connection inside
    the batch's transaction (``sqlite3.Connection`` on SQLite, plain functions; an
    ``asyncpg`` connection on PostgreSQL, ``async`` functions). ``setup(db)`` runs once
    per object before its first batch, in a transaction of its own on PostgreSQL and in
    autocommit on SQLite (``executescript`` works): make it idempotent (``CREATE TABLE
    IF NOT EXISTS``). ``reset(db)`` empties the tables for :meth:`rebuild`, in one
    transaction with forgetting the position. The state store must be SQLite or
    PostgreSQL (by default the event store's own database).
    """

    def __init__(
        self,
        name: str,
        store: EventStore,
        *,
        setup: Callable[[Any], Any] | None = None,
        reset: Callable[[Any], Any] | None = None,
        streams: Patterns = None,
        types: Patterns = None,
        state_store: CheckpointStore | str | None = None,
        batch_size: int = 100,
    ) -> None:
        super().__init__(
            name,
            store,
            initial=list,
            streams=streams,
            types=types,
            state_store=state_store,
            batch_size=batch_size,
        )
        self._handlers = ProjectionHandlers(name, takes=("db", "event"))
        for what, function in (("setup", setup), ("reset", reset)):
            if function is not None:
                check_handler(function, what, takes=("db",))
        self._setup = setup
        self._reset = reset
        self._set_up = False

    # -- what differs from Projection ------------------------------------------------

    @property
    def state(self) -> None:
        """Always None: the state is in your tables."""
        return None

    @property
    def _key(self) -> str:
        return f"tables:{self.name}"

    @property
    def _what(self) -> str:
        return f"table projection {self.name!r}"

    async def load(self) -> int | None:
        """Load the committed position (None: nothing applied yet) and return it."""
        cuts = self._cuts
        with run_in(self._runs):  # close() waits for it
            async with self._turn():
                # a close() from a handler while this waited for the turn: do not start
                self._check_not_cut(cuts, "load()")
                await self._load()
                return self._position

    async def _load(self) -> Any:
        await self._check_read()
        await self._check_scope(f"loading {self._what}")
        saved = await self.state_store.load(self._key)
        await self._check_head(saved)
        self._state, self._position = [], None if saved is None else saved.position
        self._revision = None if saved is None else saved.revision
        self._loaded = True
        return None

    def _check_writable(self) -> None:
        """Refuse, before anything is applied, a state store that keeps no tables and
        code that does not suit its driver (handlers cannot change while a run is under
        way, so a commit need not check again)."""
        super()._check_writable()
        sqlite = isinstance(self._database(), SQLiteCheckpointStore)
        for what, function in self._callables():
            if is_async_callable(function) == sqlite:
                raise ConfigurationError(
                    f"table projection {self.name!r}: {what} {handler_name(function)} "
                    + (
                        "is async, but on SQLite it runs on the database's thread with a "
                        "sqlite3 connection: make it a plain function"
                        if sqlite
                        else "is not async, but on PostgreSQL it gets an asyncpg "
                        "connection, whose statements must be awaited: make it an async def"
                    )
                    + " (nothing was applied)"
                )

    def _database(self) -> SQLiteCheckpointStore | PostgresCheckpointStore:
        """The state store, which must keep tables."""
        state_store = self.state_store
        if not isinstance(state_store, SQLiteCheckpointStore | PostgresCheckpointStore):
            raise ConfigurationError(
                f"table projection {self.name!r} needs a database for its tables, but its "
                f"state store {describe_checkpoints(state_store)} is not SQLite or "
                "PostgreSQL: give state_store= an sqlite:/// or postgresql:// URL"
            )
        return state_store

    def _callables(self) -> Iterable[tuple[str, Callable[..., Any]]]:
        if self._setup is not None:
            yield "setup", self._setup
        if self._reset is not None:
            yield "reset", self._reset
        for apply in self._handlers.every():
            yield "handler", apply.function

    async def _apply(self, chosen: tuple[Apply, ...], state: Any, event: Event) -> Any:
        pending: Pending = state
        pending.append((chosen, event))  # applied in the commit's transaction
        return pending

    async def _commit(self, state: Any, position: int | None) -> None:
        if position is None:
            return
        pending: Pending = state
        await self._record_scope()  # (a run records it first: no await here then)
        # settled: a commit cancelled half-way may still reach the disk, and the
        # position in memory must follow whatever did
        await settled(self._save_batch(tuple(pending), position))
        pending.clear()

    async def _run(self) -> ReplayReport:
        # the tables exist once a run has started, even with nothing to apply yet
        self._check_writable()
        await self._prepare(self._database())
        return await super()._run()

    async def _save_batch(self, batch: Batch, position: int) -> None:
        database = self._database()
        await self._prepare(database)
        try:
            if isinstance(database, SQLiteCheckpointStore):
                revision = await database.save_within(
                    self._key,
                    position,
                    previous=self._position,
                    revision=self._revision,
                    work=self._sqlite_batch(batch),
                )
            else:
                revision = await database.save_within(
                    self._key,
                    position,
                    previous=self._position,
                    revision=self._revision,
                    work=self._postgres_batch(batch),
                )
        except TimeoutError as exc:
            raise ReplayError(
                f"table projection {self.name!r}: the batch of global positions "
                f"{_span(batch, position)} outlasted its transaction's bound ({exc}); make "
                "batch_size= smaller or raise ?command_timeout= in the state store's URL"
            ) from exc
        except Exception as exc:
            if _refused_data(exc):
                raise self._refused(batch, position, exc) from exc
            raise
        self._position, self._revision = position, revision

    def _refused(self, batch: Batch, position: int, exc: BaseException) -> ReplayError:
        """The database refused what the batch's handlers did, without a handler raising:
        a PostgreSQL transaction a caught error aborted, a constraint checked at COMMIT."""
        span = _span(batch, position)
        if getattr(exc, "sqlstate", None) == _ABORTED:
            return self._aborted(f"at the commit of global positions {span}")
        return ReplayError(
            f"table projection {self.name!r}: the database refused the rows of the batch "
            f"of global positions {span} when it committed them ({exc}): a constraint "
            "checked at COMMIT (a deferred foreign key, say); nothing of the batch was "
            "written (tables and position as last committed)"
        )

    def _aborted(self, noticed: str) -> ReplayError:
        return ReplayError(
            f"table projection {self.name!r}: a handler caught the error of one of its "
            f"statements, which aborts a PostgreSQL transaction (noticed {noticed}), so "
            "nothing of the batch was written; wrap a statement whose error you catch in "
            "`async with db.transaction():` (a savepoint)"
        )

    async def _prepare(self, database: SQLiteCheckpointStore | PostgresCheckpointStore) -> None:
        """Run ``setup`` once for this object, before it writes or reads the log."""
        if self._set_up or self._setup is None:
            return
        setup = self._setup
        if isinstance(database, SQLiteCheckpointStore):
            await database.prepare(lambda db: self._call_sync("setup", setup, db))
        else:
            await database.prepare(lambda db: self._call_async("setup", setup, db))
        self._set_up = True

    async def _forget_saved(self) -> None:
        """Empty the tables (``reset``) and forget the position, in one transaction."""
        reset = self._reset
        if reset is None:
            raise ConfigurationError(
                f"table projection {self.name!r} cannot rebuild without reset=: a function "
                "that empties its tables (in the same transaction that forgets its "
                "position); nothing was changed"
            )
        await self._check_read()  # before the tables are emptied
        await self._check_scope(f"rebuilding {self._what}", rebuilding=True)
        database = self._database()

        async def forget() -> bool:
            if isinstance(database, SQLiteCheckpointStore):
                return await database.delete_within(self._key, self._sqlite_guarded("reset", reset))
            return await database.delete_within(
                self._key, lambda db: self._call_async("reset", reset, db)
            )

        try:
            await self._prepare(database)
            await self._forget_checkpoint(forget)  # audited with the store's audit=
        except BaseException as exc:
            await self._reload_after(exc)
            raise
        self._state, self._position, self._loaded = [], None, True
        self._revision = None
        await self._record_scope()  # the tables to come are this projection's

    # -- calling the user's code inside the transaction ------------------------------

    def _sqlite_batch(self, batch: Batch) -> Callable[[Any], None]:
        def work(db: Any) -> None:
            with _Guard(db) as guard:
                for chosen, event in batch:
                    for apply in chosen:
                        self._call_sync("handler", apply.function, db, event, guard)

        return work

    def _sqlite_guarded(self, what: str, function: Callable[..., Any]) -> Callable[[Any], None]:
        def work(db: Any) -> None:
            with _Guard(db) as guard:
                self._call_sync(what, function, db, guard=guard)

        return work

    def _postgres_batch(self, batch: Batch) -> Callable[[Any], Awaitable[None]]:
        async def work(db: Any) -> None:
            for chosen, event in batch:
                for apply in chosen:
                    await self._call_async("handler", apply.function, db, event)

        return work

    def _call_sync(
        self,
        what: str,
        function: Callable[..., Any],
        db: Any,
        event: Event | None = None,
        guard: _Guard | None = None,
    ) -> None:
        """Call ``function`` on SQLite's worker thread; its error is a ReplayError."""
        arguments = (db,) if event is None else (db, event)
        try:
            result = function(*arguments)
        except Exception as exc:
            if guard is not None and guard.denied:
                raise self._refused_end(what, function, event) from exc
            if _closed(db):
                raise self._closed_it(what, function, event) from exc
            raise self._failed(what, function, event, exc) from exc
        if _closed(db):
            raise self._closed_it(what, function, event)
        if inspect.isawaitable(result):
            if inspect.iscoroutine(result):
                result.close()
            raise self._failed(
                what,
                function,
                event,
                TypeError("it returned an awaitable; on SQLite it must be a plain function"),
            )
        if what != "setup" and not db.in_transaction:
            raise self._ended(what, function, event, "commit() or executescript()")

    async def _call_async(
        self, what: str, function: Callable[..., Any], db: Any, event: Event | None = None
    ) -> None:
        """Call and await ``function`` on PostgreSQL; its error is a ReplayError, unless
        the connection is gone (an outage: the store's to handle)."""
        arguments = (db,) if event is None else (db, event)
        try:
            result = function(*arguments)
            if inspect.isawaitable(result):
                await result
        except Exception as exc:
            if db.is_closed():
                raise
            if getattr(exc, "sqlstate", None) == _ABORTED:  # by an error caught before
                raise self._aborted(_on(event).strip() or f"in {what}") from exc
            raise self._failed(what, function, event, exc) from exc
        if db.is_closed():
            return  # cut off meanwhile (command_timeout, an outage): the store's to handle
        if not db.is_in_transaction():
            raise self._ended(what, function, event, "COMMIT or ROLLBACK")

    def _failed(
        self, what: str, function: Callable[..., Any], event: Event | None, exc: BaseException
    ) -> ReplayError:
        if what != "setup":
            outcome = "the batch was rolled back (tables and position as last committed)"
        elif isinstance(self.state_store, SQLiteCheckpointStore):
            outcome = (
                "setup runs in autocommit on SQLite, so what it did before the error stays: "
                "make each of its statements idempotent (IF NOT EXISTS)"
            )
        else:
            outcome = "its transaction was rolled back"
        return ReplayError(
            f"table projection {self.name!r}: {what} {handler_name(function)} failed"
            f"{_on(event)}: {exc}; {outcome}"
        )

    def _refused_end(
        self, what: str, function: Callable[..., Any], event: Event | None
    ) -> ReplayError:
        return ReplayError(
            f"table projection {self.name!r}: {what} {handler_name(function)} tried to end "
            f"the projection's transaction{_on(event)} (commit(), rollback(), "
            "executescript() or a `with db:` block), which is refused: its statements run "
            "inside the projection's transaction, which commits them with the position; "
            "nothing of the batch was written"
        )

    def _closed_it(
        self, what: str, function: Callable[..., Any], event: Event | None
    ) -> ReplayError:
        return ReplayError(
            f"table projection {self.name!r}: {what} {handler_name(function)} closed the "
            f"state store's connection{_on(event)}, which the projection owns: "
            + _CLOSED_OUTCOME.get(
                what, "nothing of the batch was written (tables and position as last committed)"
            )
            + "; the next call opens a new connection. Do not close the connection given"
        )

    def _ended(
        self, what: str, function: Callable[..., Any], event: Event | None, how: str
    ) -> ReplayError:
        return ReplayError(
            f"table projection {self.name!r}: {what} {handler_name(function)} ended the "
            f"projection's transaction{_on(event)} ({how}): what it wrote before that may be "
            "committed without the position, and is applied again on the next run; its "
            "statements must run inside the transaction, so that tables and position "
            "commit together (then rebuild() to be sure the tables are right)"
        )


class _Guard:
    """While a handler or ``reset`` runs on SQLite, statements that would end the
    projection's transaction (``COMMIT``, ``ROLLBACK``, ``BEGIN``, and so what
    ``commit()``, ``rollback()``, ``executescript()`` and ``with db:`` send) are refused
    by an authorizer, so the mistake commits nothing; savepoints stay allowed."""

    __slots__ = ("db", "denied")

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.denied = False

    def __enter__(self) -> _Guard:
        self.db.set_authorizer(self._authorize)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if not _closed(self.db):  # closed by the handler: its error says so
            self.db.set_authorizer(None)

    def _authorize(self, action: int, *_: object) -> int:
        if action == sqlite3.SQLITE_TRANSACTION:
            self.denied = True
            return sqlite3.SQLITE_DENY
        return sqlite3.SQLITE_OK


def _closed(db: sqlite3.Connection) -> bool:
    """Whether a handler closed SQLite connection ``db``."""
    try:
        db.total_changes  # noqa: B018 (raises on a closed connection)
    except sqlite3.ProgrammingError:
        return True
    return False


#: what a ``setup`` or ``reset`` that closed the connection leaves (a handler: nothing)
_CLOSED_OUTCOME = {
    "setup": "what it did before stays (setup runs in autocommit)",
    "reset": "nothing was emptied or forgotten (tables and position as before)",
}

#: SQLSTATE in_failed_sql_transaction: a statement in a transaction an error aborted
_ABORTED = "25P02"


def _on(event: Event | None) -> str:
    """Which event a call was for, for a message (nothing for setup and reset)."""
    if event is None:
        return ""
    return f" on {event.type!r} at global position {event.global_position}"


def _span(batch: Batch, position: int) -> str:
    """The global positions a batch covers, for a message."""
    first = batch[0][1].global_position if batch else position
    return f"{first}..{position}"


def _refused_data(error: BaseException) -> bool:
    """Whether ``error`` (raised as the driver raised it by ``save_within``) is the
    database refusing the batch's data: an integrity error at COMMIT, or a PostgreSQL
    transaction that a caught error aborted."""
    if isinstance(error, sqlite3.IntegrityError):
        return True
    sqlstate = str(getattr(error, "sqlstate", "") or "")
    return sqlstate.startswith("23") or sqlstate == _ABORTED
