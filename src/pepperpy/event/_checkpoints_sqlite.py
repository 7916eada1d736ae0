"""The SQLite checkpoint store: its own ``sqlite3`` connection to the event store's file."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

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
    matches,
    new_revision,
)
from ._errors import StoreError
from ._sqlite import (
    OneConnection,
    _enter_wal,
    open_read_only,
    track_forks,
    write_transaction,
)
from .store._sqlite_schema import (
    BUSY_TIMEOUT,
    NOTHING_WRITTEN,
    check_event_store,
    check_file,
    file_identity,
    named_error,
    read_only_file,
    wal_size,
)
from .store._sqlite_url import SQLiteAccess, SQLiteURL
from .store.sqlite import parse_url as parse_sqlite_url

__all__ = ["SQLiteCheckpointStore", "of_url", "sqlite_path"]


def sqlite_path(url: str) -> Path:
    """The file of a ``sqlite:///relative/path`` or ``sqlite:////absolute/path`` URL.

    Parsed by the event store's own parser, so checkpoints land in the same file (and a
    URL the store refuses is refused here too).
    """
    return Path(parse_sqlite_url(url).path)


def of_url(options: SQLiteURL, access: SQLiteAccess) -> SQLiteCheckpointStore:
    """The checkpoint store of an event store URL's file, with its options: ``create``,
    ``mode=ro``, ``immutable=1``, and ``busy_timeout`` and ``synchronous`` as the event
    store of that URL takes them (default 10 seconds, ``FULL``)."""
    store = SQLiteCheckpointStore(
        options.path,
        create=options.create,
        read_only=access.read_only,
        immutable=access.immutable,
    )
    store._busy_timeout = options.busy_timeout
    store._synchronous = options.synchronous
    return store


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

    Reads create nothing, as on PostgreSQL: on a file without the checkpoint table
    ``names()`` is empty, ``load()`` None and ``delete()`` False, and the file is left
    as it was (no table, no switch to WAL mode); on a path with no file at all they
    answer the same and make no file (with ``create=False`` the file must be an event
    store, as above). The first write (``save``, ``save_within``, ``delete_within``,
    ``prepare``) creates the file if need be, switches it to WAL mode and creates the
    table. A table made before revisions were kept is brought up to date when the
    connection is opened, reads included, as PostgreSQL's is.

    A failure of SQLite's raises :class:`StoreError` naming the file, SQLite's error and
    code, and the likely cause (a ``save`` or ``delete`` also says nothing was written).
    A file found read-only by a write has its connection opened again before every write
    until one succeeds: SQLite opened it read-only, and it would stay so after the file
    became writable.

    A write waits up to 10 seconds for another connection's lock, as the event store's
    do; one opened from a store URL (:func:`of_url`, which
    :func:`~pepperpy.event._checkpoints.open_checkpoint_store` uses) takes the URL's
    ``busy_timeout`` and ``synchronous``, as the event store of that URL does.

    Like the event store, it keeps the file it opened: should the path be deleted or
    another file be renamed over it (a restore), every call raises :class:`StoreError`
    ("removed or replaced") instead of going on with the old file, and the old file's
    write-ahead log is emptied into it, so that the ``-wal`` left at the path holds
    nothing SQLite would apply to the new file. Close the store and open it again.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        create: bool = True,
        read_only: bool = False,
        immutable: bool = False,
    ) -> None:
        # absolute: the connection opens on first use, maybe after an os.chdir()
        self.path = Path(path).absolute()
        self.create = create
        self.read_only = read_only or immutable
        self.immutable = immutable
        #: how long a call waits for another connection's lock (seconds), and the
        #: connection's ``PRAGMA synchronous``: a store URL's (see :func:`of_url`)
        self._busy_timeout = BUSY_TIMEOUT
        self._synchronous = "FULL"
        self._db: sqlite3.Connection | None = None
        #: a write found the file read-only: each write opens the connection again,
        #: until one succeeds
        self._reopen = False
        #: the file first opened, as (device, inode): every call checks the path still
        #: names it (None: not opened yet)
        self._identity: tuple[int, int] | None = None
        #: the connection set up for writes (WAL mode, the table: see ``_set_up``), if
        #: the current one is
        self._ready: sqlite3.Connection | None = None
        #: held around every use of the connection, and by fork() (``._sqlite``)
        self._lock = threading.Lock()
        track_forks(self)

    def _connect(self, create: bool = True) -> sqlite3.Connection:
        """The connection, opened if need be, and made ready for a write that needs the
        table (see :meth:`_set_up`); ``create=False`` for reads and ``delete``, which
        make neither the file nor the table."""
        if self._db is None and self.read_only:
            if self.immutable and wal_size(str(self.path)) > 0:
                raise StoreError(
                    f"checkpoint store {str(self.path.absolute())!r} has a non-empty "
                    "write-ahead log, which immutable=1 would not read: open it with mode=ro"
                )
            check_event_store(
                str(self.path), busy_timeout=self._busy_timeout, immutable=self.immutable
            )
            self._db = open_read_only(
                self.path, timeout=self._busy_timeout, immutable=self.immutable
            )
        if self._db is None:
            if not self.create:
                check_event_store(str(self.path), busy_timeout=self._busy_timeout)
            # only a write that needs the table may make the file (mode=rwc); anything
            # else opens what is there (mode=rw), and a file removed meanwhile is an error
            mode = "rwc" if create else "rw"
            db = sqlite3.connect(
                f"{self.path.as_uri()}?mode={mode}",
                uri=True,
                isolation_level=None,
                check_same_thread=False,
                timeout=self._busy_timeout,
            )
            try:
                db.execute(f"PRAGMA synchronous={self._synchronous}")
                # a state replaced or deleted is zeroed where it was, not left in free
                # space (a projection's state is derived from event data: a rebuild after
                # a shred must not leave the old one in the file)
                db.execute("PRAGMA secure_delete=ON")
                if _has_table(db):  # brought up to date now, as PostgreSQL's is
                    self._set_up(db)
            except BaseException:
                db.close()
                raise
            self._db = db
        if create and self._ready is not self._db:
            self._set_up(self._db)
        if self._identity is None:
            self._identity = file_identity(str(self.path.absolute()))
        return self._db

    def _set_up(self, connection: sqlite3.Connection) -> None:
        """Switch the file to WAL mode, create the table if it is missing and add the
        revisions to one made before they were kept: what a write needs, done once per
        connection (reads do none of it on a file without the table)."""
        _enter_wal(connection, self._busy_timeout)
        connection.execute(
            f"CREATE TABLE IF NOT EXISTS {TABLE} (name TEXT PRIMARY KEY, "
            "position INTEGER NOT NULL, state TEXT, updated_at TEXT NOT NULL, "
            "revision TEXT)"
        )
        _add_revisions(connection)
        self._ready = connection

    async def _run(self, work: Any, *args: Any) -> Any:
        """Run ``work(connection, *args)`` on a worker thread, under the lock.

        A failure of SQLite's is raised named (see the class); one of a write (any work
        but a load) also says nothing of it was written. After a write found the file
        read-only, every write opens the connection again, until one succeeds.
        """
        writes = work not in _READS
        creates = work not in _NOTHING  # every write but delete needs the table

        def locked() -> Any:
            with self._lock:
                try:
                    if writes and self._reopen and self._db is not None:
                        self._let_go_if_moved()
                        db, self._db = self._db, None
                        db.close()
                    if not creates and self._nothing_there():
                        return _NOTHING[work]  # no file: nothing saved, and none made
                    connection = self._connect() if creates else self._connect(create=False)
                    self._check_file(writes)
                    _checking.file = self._check_file
                    try:
                        result = work(connection, *args)
                    finally:
                        _checking.file = None
                except StoreError:
                    self._let_go_if_moved()  # "removed or replaced": rolled back first
                    raise
                except sqlite3.Error as exc:
                    carried = exc.__context__
                    if isinstance(carried, _Theirs) and _is_closed(connection):
                        # the caller's work closed the connection, and the rollback that
                        # followed its error failed on it: the work's error is the one
                        raise carried from None
                    self._reopen = self._reopen or read_only_file(exc)
                    path = str(self.path.absolute())
                    raise named_error(
                        exc,
                        path,
                        NOTHING_WRITTEN if writes else "",
                        head=f"checkpoint store {path!r}",
                    ) from exc
                finally:
                    if self._db is not None and _is_closed(self._db):
                        # closed by the caller's work (a TableProjection handler): open a
                        # new one next time, instead of failing every call from now on
                        self._db = None
                if writes:
                    self._reopen = False
                return result

        return await asyncio.to_thread(locked)

    def _nothing_there(self) -> bool:
        """Under the lock: whether there is no file at the path, none having been opened,
        for a read (or ``delete``) to answer as on a file without the table, making none.
        A file opened before and removed since is refused (:meth:`_check_file`)."""
        if self._db is not None or self.read_only or not self.create:
            return False  # read_only and create=False: the file must be an event store
        try:
            os.stat(self.path)
        except FileNotFoundError:
            pass
        except OSError:
            return False  # there or not, it cannot be told: opening it says why
        else:
            return False
        self._check_file(False)  # opened before: "removed or replaced"
        return True

    def _check_file(self, write: bool = True) -> None:
        """Refuse to go on with a file removed or replaced since it was opened (a
        ``write`` refused that way wrote nothing: ``written=False``)."""
        check_file(str(self.path.absolute()), self._identity, write=write)

    def _let_go_if_moved(self) -> None:
        """Under the lock, outside a transaction: if the file was removed or replaced,
        empty the old file's write-ahead log (see :func:`_let_go`)."""
        db = self._db
        if db is not None and self._identity is not None:
            if file_identity(str(self.path.absolute())) != self._identity:
                _let_go(db)

    def _refuse_writes(self) -> None:
        if self.read_only:
            mode = "immutable=1" if self.immutable else "mode=ro"
            raise StoreError(
                f"checkpoint store {str(self.path.absolute())!r} is open read-only ({mode}): "
                f"checkpoints are not saved or deleted; open the store without {mode} to "
                "write them"
            )

    async def load(self, name: str) -> Checkpoint | None:
        check_checkpoint_name(name)
        row = await self._run(_sqlite_load, name)
        if row is None:
            return None
        position, state, updated_at, revision = row
        return Checkpoint(
            name,
            position,
            None if state is None else _json.loads(state),
            datetime.fromisoformat(updated_at),
            revision,
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
        check_checkpoint_save(name, position, previous, revision)
        self._refuse_writes()
        text = None if state is None else _encode_state(state).decode()
        written = new_revision()
        actual, saved = await self._run(
            _sqlite_save, name, position, text, previous, revision, written
        )
        if not saved:
            raise _conflict(name, previous, actual)
        return written

    async def delete(self, name: str) -> bool:
        check_checkpoint_name(name)
        self._refuse_writes()
        return bool(await self._run(_sqlite_delete, name))

    async def names(self) -> list[str]:
        found: Iterable[str] = await self._run(_sqlite_names)
        return _listed(found)

    # -- tables of your own, committed with a checkpoint (TableProjection's) ------------

    async def save_within(
        self,
        name: str,
        position: int,
        *,
        previous: int | None,
        work: Callable[[Any], None],
        revision: str | None = None,
    ) -> str:
        """Save ``position`` for ``name`` (no state) in one transaction with your writes;
        return the revision written.

        The compare-and-set of :meth:`save` comes first (``previous``, and ``revision``
        if given); only if it holds does
        ``work(connection)`` run, on the store's worker thread with its ``sqlite3``
        connection, inside the ``BEGIN IMMEDIATE`` transaction that then writes the
        position: your rows and the checkpoint commit together or not at all. What your
        writes cause is raised as it is, nothing written: an error of ``work``'s, and a
        constraint checked at ``COMMIT`` (a deferred foreign key, as ``sqlite3``'s
        ``IntegrityError``). ``work`` must not commit (``commit()``, ``executescript``, a
        ``with connection:`` block): that raises :class:`RuntimeError`, and what it
        committed stays, without the position.
        """
        check_checkpoint_save(name, position, previous, revision)
        self._refuse_writes()
        written = new_revision()
        actual, saved = await self._theirs(
            _sqlite_save, name, position, None, previous, revision, written, _inside(work)
        )
        if not saved:
            raise _conflict(name, previous, actual)
        return written

    async def delete_within(self, name: str, work: Callable[[Any], None]) -> bool:
        """:meth:`delete` with ``work(connection)`` in the same transaction (emptying the
        tables a checkpoint was for, say); True if there was a checkpoint. Errors as
        :meth:`save_within`'s."""
        check_checkpoint_name(name)
        self._refuse_writes()
        return bool(await self._theirs(_sqlite_delete_within, name, _inside(work)))

    async def prepare(self, work: Callable[[Any], None]) -> None:
        """Run ``work(connection)`` on the worker thread in autocommit, outside any
        transaction of the store's (``executescript`` works): for ``CREATE TABLE IF NOT
        EXISTS`` and the like. Its error is raised as it is; what it did before stays."""
        self._refuse_writes()
        await self._theirs(_sqlite_prepare, _theirs(work))

    async def _theirs(self, work: Any, *args: Any) -> Any:
        """:meth:`_run`, raising the caller's work's own error as it is (not worded as
        the store's failure)."""
        try:
            return await self._run(work, *args)
        except _Theirs as carried:
            raise carried.error from None

    async def close(self) -> None:
        """Close the connection, once the call under way on it (if any) is done.

        That call runs in a worker thread and may wait for another writer's lock (up to
        the busy timeout): ``close()`` then waits for it in a thread of its own, never
        on the event loop's (it held the whole loop). Cancelling ``close()`` stops only
        the wait: the connection is closed all the same. The store stays usable: its
        next call opens the file again.
        """
        if self._lock.acquire(blocking=False):  # nothing under way: at once
            try:
                self._close_now()
            finally:
                self._lock.release()
            return
        done: Future[None] = Future()
        done.set_running_or_notify_cancel()  # a cancelled wait leaves it be
        threading.Thread(
            target=self._close_when_free, args=(done,), name="pepperpy-checkpoints-close"
        ).start()
        await asyncio.wrap_future(done)

    def _close_when_free(self, done: Future[None]) -> None:
        try:
            with self._lock:
                self._close_now()
        except BaseException as exc:  # closing failed: the caller hears of it
            done.set_exception(exc)
        else:
            done.set_result(None)

    def _close_now(self) -> None:
        """Under the lock: let go of the file, and close the connection."""
        if self._db is not None:
            self._let_go_if_moved()
            self._db.close()
            self._db = None


def _is_closed(connection: sqlite3.Connection) -> bool:
    """Whether ``connection`` was closed (sqlite3 has no attribute that says so)."""
    try:
        connection.total_changes  # noqa: B018 (raises on a closed connection)
    except sqlite3.ProgrammingError:
        return True
    return False


#: the check of the current call's file, for work that runs a transaction of its own to
#: call just before its ``COMMIT`` (set by ``SQLiteCheckpointStore._run``, per thread)
_checking = threading.local()


def _before_commit() -> None:
    """Inside a write transaction, last: refuse to commit to a file removed or replaced
    (raising rolls the transaction back)."""
    check = getattr(_checking, "file", None)
    if check is not None:
        check()


def _let_go(connection: sqlite3.Connection) -> None:
    """Empty the write-ahead log of a file removed or replaced, into that old file.

    SQLite finds the ``-wal`` by the file's name: the old file's would otherwise stay at
    the path, and the next connection to open it would apply its frames to the new file
    (see ``store/_sqlite_writer.py``, ``Writer._let_go``). Not inside a transaction (the
    caller's was rolled back first); a failure (busy, read-only) is left for the next call.
    """
    if connection.in_transaction:
        return
    with contextlib.suppress(sqlite3.Error):
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()


def _has_revisions(connection: sqlite3.Connection) -> bool:
    """Whether the checkpoint table has its ``revision`` column (one made by a version
    before revisions were kept has not, until a writer adds it)."""
    return any(row[1] == "revision" for row in connection.execute(f"PRAGMA table_info({TABLE})"))


def _add_revisions(connection: sqlite3.Connection) -> None:
    """Add the ``revision`` column to a table made before revisions were kept, giving
    each row one (a random one each), once: a writer that finds it missing adds it in an
    immediate transaction, looking again once that is held (another process may have
    added it meanwhile). Rows written later by a version that keeps none have None, and
    saves over them compare the position alone, as that version does."""
    if _has_revisions(connection):
        return
    with write_transaction(connection):
        if _has_revisions(connection):
            return
        connection.execute(f"ALTER TABLE {TABLE} ADD COLUMN revision TEXT")
        connection.execute(
            f"UPDATE {TABLE} SET revision = lower(hex(randomblob(16))) WHERE revision IS NULL"
        )


def _has_table(connection: sqlite3.Connection) -> bool:
    """Whether the file has the checkpoint table."""
    return bool(
        connection.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (TABLE,)
        ).fetchone()
    )


def _missing_table(connection: sqlite3.Connection) -> bool:
    """After a statement on the table failed: whether that was for want of the table
    (a read on a file where nothing was saved yet, which makes none)."""
    try:
        return not _has_table(connection)
    except sqlite3.Error:
        return False  # the failure is the one to raise


def _sqlite_load(connection: sqlite3.Connection, name: str) -> tuple[Any, ...] | None:
    """The row of ``name``; None on a file without the table, and no revision from a
    table made before revisions were kept (a read-only store does not add them, and a
    table another version made may appear after the connection was opened)."""
    try:
        row = connection.execute(
            f"SELECT position, state, updated_at, revision FROM {TABLE} WHERE name = ?", (name,)
        ).fetchone()
    except sqlite3.OperationalError:
        if _missing_table(connection):
            return None
        if _has_revisions(connection):
            raise
        row = connection.execute(
            f"SELECT position, state, updated_at, NULL FROM {TABLE} WHERE name = ?", (name,)
        ).fetchone()
    return None if row is None else tuple(row)


def _sqlite_names(connection: sqlite3.Connection) -> list[str]:
    """Every checkpoint's name (none on a file without the table)."""
    try:
        return [name for (name,) in connection.execute(f"SELECT name FROM {TABLE}")]
    except sqlite3.OperationalError:
        if _missing_table(connection):
            return []
        raise


#: the work that only reads (a failure of any other says nothing of it was written)
_READS = frozenset({_sqlite_load, _sqlite_names})


def _sqlite_save(
    connection: sqlite3.Connection,
    name: str,
    position: int,
    state: str | None,
    previous: int | None,
    revision: str | None,
    written: str,
    work: Callable[[sqlite3.Connection], None] | None = None,
) -> tuple[int | None, bool]:
    """Compare-and-set in one immediate transaction, after ``work`` if it holds; return
    the position found, and whether ``position`` was saved (with revision ``written``)."""
    now = datetime.now(UTC).isoformat()
    with _theirs_at_commit(work is not None), write_transaction(connection):
        row = connection.execute(
            f"SELECT position, revision FROM {TABLE} WHERE name = ?", (name,)
        ).fetchone()
        actual = None if row is None else int(row[0])
        if not matches(previous, revision, actual, None if row is None else row[1]):
            return actual, False
        if work is not None:
            work(connection)
        connection.execute(
            f"INSERT INTO {TABLE} (name, position, state, updated_at, revision) "
            "VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET position = excluded.position, "
            "state = excluded.state, updated_at = excluded.updated_at, "
            "revision = excluded.revision",
            (name, position, state, now, written),
        )
        _before_commit()
    return actual, True


def _sqlite_delete(connection: sqlite3.Connection, name: str) -> int:
    """Delete ``name``'s row; 0 on a file without the table (none is made)."""
    try:
        return connection.execute(f"DELETE FROM {TABLE} WHERE name = ?", (name,)).rowcount
    except sqlite3.OperationalError:
        if _missing_table(connection):
            return 0
        raise


def _sqlite_delete_within(
    connection: sqlite3.Connection, name: str, work: Callable[[sqlite3.Connection], None]
) -> int:
    with _theirs_at_commit(True), write_transaction(connection):
        deleted = _sqlite_delete(connection, name)
        work(connection)
        _before_commit()
    return deleted


def _sqlite_prepare(
    connection: sqlite3.Connection, work: Callable[[sqlite3.Connection], None]
) -> None:
    work(connection)


#: the work that makes nothing (reads, and ``delete``), and what each answers where
#: there is no file; any other work is a write that needs the table, which the first
#: one makes (``save``, ``save_within``, ``delete_within``, ``prepare``)
_NOTHING: dict[Any, Any] = {_sqlite_load: None, _sqlite_names: (), _sqlite_delete: 0}


class _Theirs(Exception):
    """Carries the caller's work's own error out of :meth:`SQLiteCheckpointStore._run`,
    which would word an ``sqlite3`` error as the store's failure."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(repr(error))
        self.error = error


def _theirs(work: Callable[[sqlite3.Connection], None]) -> Callable[[sqlite3.Connection], None]:
    """``work``, its exceptions carried as :class:`_Theirs`."""

    def carried(connection: sqlite3.Connection) -> None:
        try:
            work(connection)
        except Exception as exc:
            raise _Theirs(exc) from None

    return carried


def _inside(work: Callable[[sqlite3.Connection], None]) -> Callable[[sqlite3.Connection], None]:
    """:func:`_theirs` for work inside the store's transaction, which it must not end."""

    def carried(connection: sqlite3.Connection) -> None:
        _theirs(work)(connection)
        if not connection.in_transaction:
            raise _Theirs(
                RuntimeError(
                    "the work ended the transaction (commit(), executescript() or a with "
                    "block on the connection): what it committed stays, without the "
                    "position; its statements must run inside it"
                )
            )

    return carried


class _theirs_at_commit:  # noqa: N801 (used as ``with``, like write_transaction)
    """A constraint checked at ``COMMIT`` (deferred) refusing the caller's rows is theirs."""

    __slots__ = ("_on",)

    def __init__(self, on: bool) -> None:
        self._on = on

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> None:
        if self._on and isinstance(exc, sqlite3.IntegrityError):
            raise _Theirs(exc) from None
