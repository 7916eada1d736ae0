"""Checkpoints: where a replay or a projection stopped, optionally with its state.

A checkpoint is one row ``(name, position, state)``. Saving writes the position and
the state together in one transaction, which is what makes projections exactly-once on
SQLite and PostgreSQL: after a crash the state on disk always matches the position on
disk, so resuming neither loses nor repeats an event's effect.

Every save is a compare-and-set on the position last loaded (``previous``), so two
runners of the same projection cannot silently overwrite each other: the slower one
gets a :class:`ConcurrencyError`.

Backends live side by side and have the same shape: :class:`MemoryCheckpointStore`,
:class:`SQLiteCheckpointStore` (its own ``sqlite3`` connection to the event store's
file) and :class:`PostgresCheckpointStore` (its own ``asyncpg`` connection to the event
store's database). :func:`open_checkpoint_store` picks one from a URL.

A save cannot be taken back half-way: SQLite's runs in a worker thread that goes on
after its caller is cancelled, and a PostgreSQL statement the server has received may
commit although its caller gave up and its connection was cut off. Callers therefore
await saves through :func:`~pepperpy.event._loops.settled`, so they always know
whether the checkpoint moved.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import sqlite3
import threading
import weakref
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from contextvars import Context
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from . import _json
from ._deps import require
from ._errors import ConcurrencyError, ConfigurationError, StoreError
from ._frozen import check_json
from ._loops import LoopShares, warn_dropped
from ._sqlite import OneConnection, open_read_only, open_wal, track_forks, write_transaction
from .store._pg_attempts import Attempts, Failed
from .store._pg_connect import cut
from .store._sqlite_schema import (
    NOTHING_WRITTEN,
    check_event_store,
    named_error,
    read_only_file,
    wal_size,
)
from .store.base import redact_url
from .store.postgres import (
    Progress,
    Watchdog,
    parse_options,
    schema_change,
    shielded_connect,
    tune_socket,
)
from .store.sqlite import parse_access
from .store.sqlite import parse_url as parse_sqlite_url

__all__ = [
    "Checkpoint",
    "CheckpointStore",
    "MemoryCheckpointStore",
    "PostgresCheckpointStore",
    "SQLiteCheckpointStore",
    "open_checkpoint_store",
    "sqlite_path",
]

TABLE = "pepperpy_checkpoints"

logger = logging.getLogger("pepperpy.event.replay")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The last position a named consumer finished, and its state (JSON-able or None)."""

    name: str
    position: int
    state: Any
    updated_at: datetime


class CheckpointStore(ABC):
    """Named checkpoints, each saved atomically together with its state."""

    #: the store only reads: ``load`` works, ``save`` and ``delete`` are refused (an
    #: SQLite store opened with ``mode=ro`` or ``immutable=1``). What saves checkpoints
    #: checks it before doing any work whose position it could not keep.
    read_only: bool = False

    @abstractmethod
    async def load(self, name: str) -> Checkpoint | None:
        """The checkpoint called ``name``, or None if there is none yet."""

    @abstractmethod
    async def save(
        self, name: str, position: int, state: Any = None, *, previous: int | None
    ) -> None:
        """Record ``position`` and ``state`` for ``name`` in one transaction.

        ``previous`` is the position loaded before (None: no checkpoint existed). If the
        stored checkpoint has moved on since, nothing is written and
        :class:`ConcurrencyError` is raised.
        """

    @abstractmethod
    async def delete(self, name: str) -> bool:
        """Forget the checkpoint ``name``; True if there was one."""

    async def close(self) -> None:
        """Release connections (the memory backend holds none)."""
        return None

    async def __aenter__(self) -> CheckpointStore:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


def _encode_state(state: Any) -> bytes:
    """A checkpoint's state as JSON, under the rules for event data (no non-str keys,
    sets or NaN: what is saved loads back the same)."""
    check_json(state, "checkpoint state")
    return _json.dumps(state)


def _conflict(name: str, previous: int | None, actual: int | None) -> ConcurrencyError:
    return ConcurrencyError(f"checkpoint {name}", previous, actual)


class MemoryCheckpointStore(CheckpointStore):
    """Checkpoints in a dict: lost with the process, so consumers are at-least-once."""

    def __init__(self) -> None:
        self._rows: dict[str, Checkpoint] = {}

    async def load(self, name: str) -> Checkpoint | None:
        return self._rows.get(name)

    async def save(
        self, name: str, position: int, state: Any = None, *, previous: int | None
    ) -> None:
        current = self._rows.get(name)
        actual = None if current is None else current.position
        if actual != previous:
            raise _conflict(name, previous, actual)
        # round-trip through JSON so the memory backend accepts exactly what the others do
        stored = None if state is None else _json.loads(_encode_state(state))
        self._rows[name] = Checkpoint(name, position, stored, datetime.now(UTC))

    async def delete(self, name: str) -> bool:
        return self._rows.pop(name, None) is not None


def sqlite_path(url: str) -> Path:
    """The file of a ``sqlite:///relative/path`` or ``sqlite:////absolute/path`` URL.

    Parsed by the event store's own parser, so checkpoints land in the same file (and a
    URL the store refuses is refused here too).
    """
    return Path(parse_sqlite_url(url).path)


class SQLiteCheckpointStore(OneConnection, CheckpointStore):
    """Checkpoints in a table of an SQLite file, written with its own connection.

    The connection runs in a worker thread (``sqlite3`` blocks); WAL mode and
    ``synchronous=FULL`` make a returned ``save`` survive a crash. A child made by
    ``os.fork()`` leaves the parent's connection alone and opens its own on first use.

    With ``create=False`` (a store URL's ``?create=0``) the file must already be an
    event store: anything else raises :class:`StoreError` on first use and is left as it
    is, as :class:`~pepperpy.event.store.sqlite.SQLiteBackend` does with the option.
    With ``read_only=True`` (``?mode=ro``; ``immutable=True`` for ``?immutable=1``) it
    is only read, as the event store is then: ``load`` works (None if the table is not
    there), ``save`` and ``delete`` raise :class:`StoreError` saying it is read-only.

    A failure of SQLite's raises :class:`StoreError` naming the file, SQLite's error and
    code, and the likely cause (a ``save`` or ``delete`` also says nothing was written).
    A file found read-only by a write has its connection opened again before every write
    until one succeeds: SQLite opened it read-only, and it would stay so after the file
    became writable.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        create: bool = True,
        read_only: bool = False,
        immutable: bool = False,
    ) -> None:
        self.path = Path(path)
        self.create = create
        self.read_only = read_only or immutable
        self.immutable = immutable
        self._db: sqlite3.Connection | None = None
        #: a write found the file read-only: each write opens the connection again,
        #: until one succeeds
        self._reopen = False
        #: held around every use of the connection, and by fork() (``._sqlite``)
        self._lock = threading.Lock()
        track_forks(self)

    def _connect(self) -> sqlite3.Connection:
        if self._db is None and self.read_only:
            if self.immutable and wal_size(str(self.path)) > 0:
                raise StoreError(
                    f"checkpoint store {str(self.path.absolute())!r} has a non-empty "
                    "write-ahead log, which immutable=1 would not read: open it with mode=ro"
                )
            check_event_store(str(self.path), immutable=self.immutable)
            self._db = open_read_only(self.path, timeout=30.0, immutable=self.immutable)
        if self._db is None:
            if not self.create:
                check_event_store(str(self.path))
            self._db = open_wal(
                self.path,
                timeout=30.0,
                schema=f"CREATE TABLE IF NOT EXISTS {TABLE} (name TEXT PRIMARY KEY, "
                "position INTEGER NOT NULL, state TEXT, updated_at TEXT NOT NULL)",
            )
            # a state replaced or deleted is zeroed where it was, not left in free space
            # (a projection's state is derived from event data: a rebuild after a shred
            # must not leave the old one in the file)
            self._db.execute("PRAGMA secure_delete=ON")
        return self._db

    async def _run(self, work: Any, *args: Any) -> Any:
        """Run ``work(connection, *args)`` on a worker thread, under the lock.

        A failure of SQLite's is raised named (see the class); one of a write (any work
        but a load) also says nothing of it was written. After a write found the file
        read-only, every write opens the connection again, until one succeeds.
        """
        writes = work not in _READS

        def locked() -> Any:
            with self._lock:
                try:
                    if writes and self._reopen and self._db is not None:
                        db, self._db = self._db, None
                        db.close()
                    result = work(self._connect(), *args)
                except sqlite3.Error as exc:
                    self._reopen = self._reopen or read_only_file(exc)
                    path = str(self.path.absolute())
                    raise named_error(
                        exc,
                        path,
                        NOTHING_WRITTEN if writes else "",
                        head=f"checkpoint store {path!r}",
                    ) from exc
                if writes:
                    self._reopen = False
                return result

        return await asyncio.to_thread(locked)

    def _refuse_writes(self) -> None:
        if self.read_only:
            mode = "immutable=1" if self.immutable else "mode=ro"
            raise StoreError(
                f"checkpoint store {str(self.path.absolute())!r} is open read-only ({mode}): "
                f"checkpoints are not saved or deleted; open the store without {mode} to "
                "write them"
            )

    async def load(self, name: str) -> Checkpoint | None:
        row = await self._run(_sqlite_load_read_only if self.read_only else _sqlite_load, name)
        if row is None:
            return None
        position, state, updated_at = row
        return Checkpoint(
            name,
            position,
            None if state is None else _json.loads(state),
            datetime.fromisoformat(updated_at),
        )

    async def save(
        self, name: str, position: int, state: Any = None, *, previous: int | None
    ) -> None:
        self._refuse_writes()
        text = None if state is None else _encode_state(state).decode()
        actual = await self._run(_sqlite_save, name, position, text, previous)
        if actual != previous:
            raise _conflict(name, previous, actual)

    async def delete(self, name: str) -> bool:
        self._refuse_writes()
        return bool(await self._run(_sqlite_delete, name))

    async def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


def _sqlite_load(connection: sqlite3.Connection, name: str) -> tuple[Any, ...] | None:
    row = connection.execute(
        f"SELECT position, state, updated_at FROM {TABLE} WHERE name = ?", (name,)
    ).fetchone()
    return None if row is None else tuple(row)


def _sqlite_load_read_only(connection: sqlite3.Connection, name: str) -> tuple[Any, ...] | None:
    """``_sqlite_load`` on a file that may not have the table (read-only: not made)."""
    if connection.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (TABLE,)
    ).fetchone():
        return _sqlite_load(connection, name)
    return None


#: the work that only reads (a failure of any other says nothing of it was written)
_READS = frozenset({_sqlite_load, _sqlite_load_read_only})


def _sqlite_save(
    connection: sqlite3.Connection,
    name: str,
    position: int,
    state: str | None,
    previous: int | None,
) -> int | None:
    """Compare-and-set in one immediate transaction; return the position found."""
    now = datetime.now(UTC).isoformat()
    with write_transaction(connection):
        row = connection.execute(f"SELECT position FROM {TABLE} WHERE name = ?", (name,)).fetchone()
        actual = None if row is None else int(row[0])
        if actual == previous:
            connection.execute(
                f"INSERT INTO {TABLE} (name, position, state, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET position = excluded.position, "
                "state = excluded.state, updated_at = excluded.updated_at",
                (name, position, state, now),
            )
    return actual


def _sqlite_delete(connection: sqlite3.Connection, name: str) -> int:
    return connection.execute(f"DELETE FROM {TABLE} WHERE name = ?", (name,)).rowcount


class _OnLoop:
    """A PostgreSQL checkpoint store's connection on one event loop.

    asyncpg connections work on the loop that opened them only. ``keeper`` is a task
    that only waits: ``asyncio.run`` cancels it when its loop shuts down, and it then
    drops the connection while the loop can still close the socket.
    """

    __slots__ = ("connection", "keeper", "lock", "loop", "openings")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.lock = asyncio.Lock()
        self.connection: Any = None
        self.keeper: asyncio.Task[None] | None = None
        #: connections being opened (see :func:`~pepperpy.event.store.postgres.shielded_connect`)
        self.openings: set[asyncio.Future[Any]] = set()

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
        for task in (keeper, *self.openings):
            if task is not None and not task.done():
                with contextlib.suppress(RuntimeError):
                    task.cancel()
        if connection is not None:
            cut(connection)


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
    store's. The table is created on first use under the event store's schema lock
    (:func:`~pepperpy.event.store.postgres.schema_change`), so stores opened at once in
    several processes on a fresh database do not collide in PostgreSQL's catalog.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        # a bad port or host list is refused here, before connecting; like the event
        # store, ?schema=name keeps the table in that PostgreSQL schema
        self._dsn, self.options = parse_options(url)
        self.schema = self.options.schema
        self._settings = {} if self.schema is None else {"search_path": self.schema}
        self._loops: LoopShares[_OnLoop] = LoopShares(_OnLoop)
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
            asyncpg = require("asyncpg", extra="postgres", feature="PostgreSQL checkpoints")
            self._driver = Attempts(asyncpg, self.options, logger)
        return self._driver

    async def _run(self, work: Callable[[Any, Progress], Awaitable[T]], *, write: str = "") -> T:
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
        at once (asyncpg would otherwise wait for a cancel request first).
        """

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
            work, _Turns(self), what="PostgreSQL checkpoint store", failure=failure
        )

    async def _open(self, on: _OnLoop) -> Any:
        """A new connection for this loop, with the table set up on it.

        If the connection breaks, or stays silent past ``command_timeout``, during the
        setup (a restart, a failover, ``pg_terminate_backend``), the setup is done once
        more on a new connection, as the event store does its own
        (:meth:`Attempts.set_up`): creating the table if it is missing is safe to repeat.
        """
        where = redact_url(self.url)
        return await self._attempts().set_up(
            functools.partial(_set_up, schema=self.schema),
            _Openings(self, on),
            what="PostgreSQL checkpoint store setup",
            failure=lambda reason: StoreError(f"{self._cannot_open} at {where}: {reason}"),
        )

    async def load(self, name: str) -> Checkpoint | None:
        row = await self._run(
            lambda connection, _: connection.fetchrow(
                f"SELECT position, state::text AS state, updated_at FROM {TABLE} WHERE name = $1",
                name,
            )
        )
        if row is None:
            return None
        state = row["state"]
        return Checkpoint(
            name, row["position"], None if state is None else _json.loads(state), row["updated_at"]
        )

    async def save(
        self, name: str, position: int, state: Any = None, *, previous: int | None
    ) -> None:
        text = None if state is None else _encode_state(state).decode()

        async def compare_and_set(connection: Any, progress: Progress) -> tuple[bool, int | None]:
            with progress.commit():
                if previous is None:
                    status = await connection.execute(
                        f"INSERT INTO {TABLE} (name, position, state, updated_at) "
                        "VALUES ($1, $2, $3::jsonb, now()) ON CONFLICT (name) DO NOTHING",
                        name,
                        position,
                        text,
                    )
                else:
                    status = await connection.execute(
                        f"UPDATE {TABLE} SET position = $2, state = $3::jsonb, "
                        "updated_at = now() WHERE name = $1 AND position = $4",
                        name,
                        position,
                        text,
                        previous,
                    )
            if status.endswith(" 1"):
                return True, None
            progress.committing = False  # it changed nothing: what follows only reads
            actual = await connection.fetchval(
                f"SELECT position FROM {TABLE} WHERE name = $1", name
            )
            return False, actual

        saved, actual = await self._run(
            compare_and_set, write=f"saving checkpoint {name!r} at position {position}"
        )
        if not saved:
            raise _conflict(name, previous, actual)

    async def delete(self, name: str) -> bool:
        async def delete(connection: Any, progress: Progress) -> str:
            with progress.commit():
                status: str = await connection.execute(f"DELETE FROM {TABLE} WHERE name = $1", name)
            return status

        status = await self._run(delete, write=f"deleting checkpoint {name!r}")
        return bool(status.endswith(" 1"))

    async def close(self) -> None:
        """Close this loop's connection; drop those of other loops (threadsafe).

        Bounded: a statement under way may finish first (a save is not cut off unseen)
        and the server may say goodbye, within ``options.close_timeout`` seconds (10, or
        ``command_timeout`` if smaller) altogether; past that, or on a failure, the
        connection is cut off (a save still under way then says its outcome is unknown).
        A connection still being opened for a cancelled caller is waited for too, within
        the same bound (it is cut off once open). Never raises for a connection that
        cannot close; cancelled, it cuts it off at once. The store stays usable: its next
        statement opens a connection again.
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
        try:
            async with asyncio.timeout(self.options.close_timeout):
                async with mine.lock:
                    if mine.connection is not None:
                        await mine.connection.close()
                if mine.openings:  # callers gave up on them: each is cut off once open
                    await asyncio.wait(set(mine.openings))
        except Exception:  # it did not close in time, or failed to: cut off below
            pass
        finally:
            connection, mine.connection = mine.connection, None
            if connection is not None and not connection.is_closed():
                connection.terminate()


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


def opened_by(store: CheckpointStore, parent: str) -> None:
    """Say that ``store`` is closed by ``parent`` (``"EventReplay"``), which opened it,
    so the warning given if it is dropped open names what the user should have closed."""
    if isinstance(store, PostgresCheckpointStore):
        store._label[1] = parent


async def _set_up(connection: Any, schema: str | None) -> None:
    """Create the checkpoint table if it is missing."""
    if await connection.fetchval("SELECT to_regclass($1) IS NULL", TABLE):
        # other stores may be creating it right now: take turns (schema_change)
        async with schema_change(connection, schema):
            await connection.execute(
                f"CREATE TABLE IF NOT EXISTS {TABLE} (name TEXT PRIMARY KEY, "
                "position BIGINT NOT NULL, state JSONB, updated_at TIMESTAMPTZ NOT NULL)"
            )


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
        await on.lock.acquire()
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


def open_checkpoint_store(url: str | None) -> CheckpointStore:
    """A checkpoint store for ``url``: the same database an event store of that URL uses.

    The scheme is matched without regard to case, as the event store matches it.
    """
    if url is None or url.lower() in ("memory://", "memory:", "memory"):
        return MemoryCheckpointStore()
    scheme = url.partition("://")[0].lower()
    if scheme == "sqlite":
        options, access = parse_sqlite_url(url), parse_access(url)
        return SQLiteCheckpointStore(
            options.path,
            create=options.create,
            read_only=access.read_only,
            immutable=access.immutable,
        )
    if scheme in ("postgresql", "postgres"):
        return PostgresCheckpointStore(url)
    raise ConfigurationError(
        f"no checkpoint store for {url!r} (use memory://, sqlite:///file.db or postgresql://...)"
    )
