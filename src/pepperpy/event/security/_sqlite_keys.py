"""Data keys in an SQLite file, apart from the events (:class:`SQLiteKeyStore`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from typing import Any, Self

from .._errors import ClosedError, ConfigurationError, EncryptionError
from .._sqlite import OneConnection, open_wal, track_forks
from ..store._sqlite_schema import NOTHING_WRITTEN, named_error, read_only_file
from ._keys import SHREDDED, KeyStore, Rewrap, WrappedKey, page_size
from ._own_file import other_tables, shown_tables

__all__ = ["SQLiteKeyStore"]

logger = logging.getLogger("pepperpy.event.security")


class SQLiteKeyStore(OneConnection, KeyStore):
    """Data keys in an SQLite file (WAL, synchronous=FULL), apart from the events.

    The file is the key store's own: a database holding other tables (an audit log, the
    event store's file given by mistake) raises ``ConfigurationError`` and is left as it
    is. Every query runs on a worker thread (``asyncio.to_thread``), never on the event loop.
    ``async with`` or ``with`` closes the file on exit; a closed key store raises
    :class:`~pepperpy.event.ClosedError`. A child made by ``os.fork()`` leaves the
    parent's connection alone and opens its own on first use.

    A removed key's page is cleared from the ``-wal`` file by :meth:`purge` (which
    :meth:`StreamEncryption.shred` and :meth:`delete` call once), never waiting for
    another connection reading the file: if one is, a warning says so and the purge is
    tried again after each later write and at :meth:`close`.

    A failure of SQLite's, opening the file included, raises
    :class:`~pepperpy.event.EncryptionError` naming the file, SQLite's error and code,
    and the likely cause, as the event store's errors do (a write also says nothing of it
    was written). A file found read-only by a write has its connection opened again
    before every write until one succeeds: SQLite opened it read-only, and it would stay
    so after the file became writable.
    """

    def __init__(self, path: str) -> None:
        #: absolute, fixed now: a connection opened again later (in a forked child, or
        #: after a write found the file read-only) must not follow an ``os.chdir()``
        self.path = path = _absolute(path)
        #: held around every use of the connection, and by fork() (``.._sqlite``)
        self._lock = threading.Lock()
        self._closed = False
        #: a key was removed since the WAL was last truncated: its page may be there
        self._unpurged = False
        #: a purge found the WAL in use (warned): retried after each write and at close
        self._purge_pending = False
        self._db: sqlite3.Connection | None = None
        #: a write found the file read-only: each write opens the connection again, until
        #: one succeeds
        self._reopen = False
        track_forks(self)
        _check_own_file(path)
        with self._lock:
            try:
                self._db = self._open()
            except sqlite3.Error as exc:
                raise self._failure(exc) from exc

    def _failure(self, error: sqlite3.Error, outcome: str = "") -> BaseException:
        """``error`` as an :class:`EncryptionError` naming the file and its cause (lock
        held). A read-only file: see ``_reopen``."""
        self._reopen = self._reopen or read_only_file(error)
        path = self.path
        return named_error(
            error, path, outcome, head=f"the key store {path!r} failed", kind=EncryptionError
        )

    def _open(self) -> sqlite3.Connection:
        _create_private(self.path)
        connection = open_wal(
            self.path,
            schema="CREATE TABLE IF NOT EXISTS data_keys (stream TEXT NOT NULL, version INTEGER"
            " NOT NULL, master_key TEXT NOT NULL, wrapped BLOB NOT NULL,"
            " PRIMARY KEY (stream, version))",
        )
        # a key overwritten by a tombstone (or deleted) is zeroed where it was, not left
        # in free space of its page for whoever holds the master key to unwrap
        connection.execute("PRAGMA secure_delete=ON")
        return connection

    def __repr__(self) -> str:
        return f"SQLiteKeyStore({self.path!r})"

    def _run(self, sql: str, args: tuple[Any, ...]) -> list[Any]:
        """Run one statement (on a worker thread: every caller goes through to_thread).

        After one that wrote (changed rows), a purge that found the WAL in use is tried
        again. A write (any statement but a SELECT) that fails says nothing of it was
        written.
        """
        writes = not sql.startswith("SELECT")
        with self._lock:
            try:
                db = self._connection(writes)
                cursor = db.execute(sql, args)
                result = [cursor.rowcount, *cursor.fetchall()]
            except sqlite3.Error as exc:
                raise self._failure(exc, NOTHING_WRITTEN if writes else "") from exc
            if writes:
                self._reopen = False
            if self._purge_pending and cursor.rowcount > 0:
                self._retry_purge(db)
            return result

    def _connection(self, writes: bool) -> sqlite3.Connection:
        """The connection to use now (lock held): opened again before a write after one
        found the file read-only, and in a forked child."""
        if self._closed:
            raise ClosedError(f"the key store {self.path!r} is closed")
        if writes and self._reopen and self._db is not None:
            db, self._db = self._db, None
            db.close()
        if self._db is None:  # a forked child: its own connection
            if self.path in _IN_MEMORY:
                raise EncryptionError(_IN_MEMORY_CHILD.format(path=self.path))
            self._db = self._open()
        return self._db

    def _run_many(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        """Run one statement for each of ``rows`` in one transaction (on a worker
        thread): all of them written, or none."""
        with self._writing() as db:
            db.executemany(sql, rows)

    @contextlib.contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        """One write transaction on the worker thread, under the store's lock: ``BEGIN
        IMMEDIATE``, the body, ``COMMIT``; anything raised rolls it back, and an SQLite
        error is raised as the store's failure (nothing written)."""
        with self._lock:
            try:
                db = self._connection(True)
                db.execute("BEGIN IMMEDIATE")
                try:
                    yield db
                    db.execute("COMMIT")
                except BaseException:
                    if db.in_transaction:
                        with contextlib.suppress(sqlite3.Error):
                            db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise self._failure(exc, NOTHING_WRITTEN) from exc
            self._reopen = False
            if self._purge_pending:
                self._retry_purge(db)

    def _truncate(self, db: sqlite3.Connection) -> bool:
        """``PRAGMA wal_checkpoint(TRUNCATE)`` without waiting: True if the WAL was reset.

        With the lock held. The checkpoint waits for every reader of the file to leave
        the WAL, calling the busy handler meanwhile: with the connection's busy timeout
        (5 s) one open read transaction elsewhere (a backup, Litestream, the sqlite3
        shell) would hold the lock, and every key store call of the process, that long.
        So it runs with the busy timeout at 0 and reports busy at once.
        """
        (timeout,) = db.execute("PRAGMA busy_timeout").fetchone()
        db.execute("PRAGMA busy_timeout=0")
        try:
            busy, _, _ = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except sqlite3.OperationalError as exc:  # some builds raise instead of a row
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            busy = 1
        finally:
            db.execute(f"PRAGMA busy_timeout={int(timeout)}")
        if busy:
            return False
        self._unpurged = self._purge_pending = False
        return True

    def _purge(self) -> None:
        """Truncate the WAL after keys were removed (on a worker thread, never waiting).

        Until then the frames written before (the page that held a key) stay in the
        ``-wal`` file for as long as the key store is open. If another connection is
        reading the file, the key is removed all the same; a warning (once, until the
        WAL is truncated) says its old page remains, and the purge is tried again
        after each later write and at :meth:`close`.
        """
        with self._lock:
            if self._closed:
                raise ClosedError(f"the key store {self.path!r} is closed")
            if not self._unpurged or self._db is None:
                return  # nothing removed (a forked child's new connection wrote nothing)
            try:
                truncated = self._truncate(self._db)
            except sqlite3.Error as exc:
                raise self._failure(exc) from exc
            if not truncated and not self._purge_pending:
                self._purge_pending = True
                logger.warning(
                    "key store %r: a key was removed, but another connection reading the"
                    " file kept the WAL from being truncated; the removed key may stay in"
                    " %s-wal until the next write to the key store or its close once that"
                    " reader is done (end long read transactions on the file)",
                    self.path,
                    self.path,
                )

    def _retry_purge(self, db: sqlite3.Connection) -> None:
        """After a write (lock held): try again a purge that found the WAL in use."""
        try:
            truncated = self._truncate(db)
        except sqlite3.Error:  # the write itself went through: keep trying later
            logger.debug("key store %r: truncating the WAL failed", self.path, exc_info=True)
            return
        if truncated:
            logger.info(
                "key store %r: the WAL is truncated; the removed keys left %s-wal",
                self.path,
                self.path,
            )

    async def purge(self) -> None:
        """Truncate the WAL once keys were removed, without waiting for other readers."""
        await asyncio.to_thread(self._purge)

    async def load(self, stream: str) -> dict[int, tuple[str, bytes]]:
        _, *rows = await asyncio.to_thread(
            self._run,
            "SELECT version, master_key, wrapped FROM data_keys WHERE stream = ?",
            (stream,),
        )
        return {version: (master, bytes(wrapped)) for version, master, wrapped in rows}

    async def load_many(self, streams: Sequence[str]) -> dict[str, dict[int, tuple[str, bytes]]]:
        """Every version of each of ``streams``, in one query (a few hundred at a time)."""
        found: dict[str, dict[int, tuple[str, bytes]]] = {stream: {} for stream in streams}
        names = list(found)
        for start in range(0, len(names), _MANY):
            chunk = names[start : start + _MANY]
            _, *rows = await asyncio.to_thread(
                self._run,
                "SELECT stream, version, master_key, wrapped FROM data_keys WHERE stream IN"
                f" ({', '.join('?' * len(chunk))})",
                tuple(chunk),
            )
            for stream, version, master, wrapped in rows:
                found[stream][version] = (master, bytes(wrapped))
        return found

    async def save(self, stream: str, version: int, master_key_id: str, wrapped: bytes) -> bool:
        count, *_ = await asyncio.to_thread(
            self._run,
            "INSERT OR IGNORE INTO data_keys VALUES (?, ?, ?, ?)",
            (stream, version, master_key_id, wrapped),
        )
        return bool(count)

    async def replace(self, stream: str, version: int, master_key_id: str, wrapped: bytes) -> None:
        shred = master_key_id == SHREDDED
        if shred:
            sql = "INSERT OR REPLACE INTO data_keys VALUES (?, ?, ?, ?)"
            args: tuple[Any, ...] = (stream, version, SHREDDED, b"")
        else:  # one statement: a shred between a load and this re-wrap wins
            sql = _REWRAP
            args = (master_key_id, wrapped, stream, version, SHREDDED)
        await asyncio.to_thread(self._run, sql, args)
        if shred:  # purged by purge(), once for all of a shred's tombstones
            self._unpurged = True

    async def rewrap(self, keys: Sequence[tuple[str, int, str, bytes]]) -> None:
        """Every re-wrapped key in one transaction: all of them written, or none."""
        rows = [
            (master, wrapped, stream, version, SHREDDED)
            for stream, version, master, wrapped in keys
        ]
        if rows:
            await asyncio.to_thread(self._run_many, _REWRAP, rows)

    async def rewrap_all(self, rewrap: Rewrap, *, page: int | None = None) -> int:
        """Every live key re-wrapped, ``page`` keys at a time, in one transaction (all
        or none), read and written on one worker thread (``rewrap`` runs there too)."""
        return await asyncio.to_thread(self._rewrap_all, rewrap, page_size(page))

    def _rewrap_all(self, rewrap: Rewrap, size: int) -> int:
        """:meth:`rewrap_all` on the worker thread: ``BEGIN IMMEDIATE`` (no other writer
        until the end), then a page of live keys read in key order after the last one,
        re-wrapped and written, until none is left; ``COMMIT``. Anything raised (by
        ``rewrap`` too) rolls every page back."""
        with self._writing() as db:
            count = 0
            rows = db.execute(_LIVE_FIRST, (SHREDDED, size)).fetchall()
            while rows:
                last = rows[-1]
                keys: list[WrappedKey] = [
                    (stream, version, master, bytes(wrapped))
                    for stream, version, master, wrapped in rows
                ]
                rows = []  # one page held at a time
                rewrapped = rewrap(keys)
                db.executemany(
                    _REWRAP,
                    [
                        (master, wrapped, stream, version, SHREDDED)
                        for stream, version, master, wrapped in rewrapped
                    ],
                )
                count += len(rewrapped)
                del keys, rewrapped
                rows = db.execute(_LIVE_AFTER, (last[0], last[1], SHREDDED, size)).fetchall()
        return count

    async def tombstone(self, stream: str, versions: Sequence[int]) -> None:
        """Every tombstone in one transaction: all of them written, or none."""
        if not versions:
            return
        rows = [(stream, version, SHREDDED, b"") for version in versions]
        await asyncio.to_thread(
            self._run_many, "INSERT OR REPLACE INTO data_keys VALUES (?, ?, ?, ?)", rows
        )
        self._unpurged = True  # purged by purge(), once for all of a shred's tombstones

    async def delete(self, stream: str) -> int:
        count, *_ = await asyncio.to_thread(
            self._run, "DELETE FROM data_keys WHERE stream = ?", (stream,)
        )
        if count:
            self._unpurged = True
            await self.purge()
        return int(count)

    async def streams(self) -> list[str]:
        _, *rows = await asyncio.to_thread(
            self._run, "SELECT DISTINCT stream FROM data_keys ORDER BY stream", ()
        )
        return [row[0] for row in rows]

    async def close(self) -> None:
        """Close the file, after a query still running on a worker thread. Idempotent."""
        await asyncio.to_thread(self._close)

    def _close(self) -> None:
        with self._lock:  # after a query still running on another thread
            if self._db is not None and not self._closed and self._unpurged:
                self._purge_at_close(self._db)
            self._closed = True
            if self._db is not None:
                self._db.close()
                self._db = None

    def _purge_at_close(self, db: sqlite3.Connection) -> None:
        """The last try to truncate the WAL after keys were removed (lock held, no wait)."""
        try:
            if self._truncate(db):
                return
        except sqlite3.Error:
            logger.debug("key store %r: truncating the WAL failed", self.path, exc_info=True)
        # closing the last connection to the file would checkpoint it, but not while
        # another one reads it
        logger.warning(
            "key store %r closed while another connection kept the WAL from being"
            " truncated: a removed key may stay in %s-wal until that connection's last"
            " checkpoint",
            self.path,
            self.path,
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._close()


#: streams ``load_many`` reads in one query (SQLite takes 32,766 parameters at most)
_MANY = 500
#: a live key re-wrapped, never over a tombstone (nor a missing row)
_REWRAP = (
    "UPDATE data_keys SET master_key = ?, wrapped = ? WHERE stream = ? AND version = ?"
    " AND master_key != ?"
)
#: a rotation's first page of live keys, in key order (the primary key's)
_LIVE_FIRST = (
    "SELECT stream, version, master_key, wrapped FROM data_keys WHERE master_key != ?"
    " ORDER BY stream, version LIMIT ?"
)
#: its next page: the live keys after the last one read
_LIVE_AFTER = (
    "SELECT stream, version, master_key, wrapped FROM data_keys WHERE (stream, version) >"
    " (?, ?) AND master_key != ? ORDER BY stream, version LIMIT ?"
)
#: SQLite's names for a database in memory, private to its connection
_IN_MEMORY = ("", ":memory:")
_IN_MEMORY_CHILD = (
    "the key store SQLiteKeyStore({path!r}) is in memory, in the connection of the"
    " process that made it: a forked child cannot reach its keys (a new connection would"
    " find none, read every event as forged and write new keys under the versions"
    " taken, which no other process could read); nothing was read or written: give the"
    " key store a file, SQLiteKeyStore('keys.db'), to share it between processes"
)


def _absolute(path: str) -> str:
    """``path`` made absolute against today's working directory (SQLite's in-memory
    names as they are)."""
    return path if path in ("", ":memory:") else os.path.abspath(path)


def _check_own_file(path: str) -> None:
    """Refuse to make a key store of a database that holds other tables (an audit log,
    an event store, another application's), before anything writes to it.

    Wrapped keys kept there would go wherever that file goes (an audit log handed to
    auditors, archived, backed up for years), beyond the reach of a shred, and whoever
    gets the master key later could read what was shredded. A file that holds data keys
    already is left as it is.
    """
    if path in ("", ":memory:"):
        return
    tables = other_tables(path, "data_keys")
    if tables:
        raise ConfigurationError(
            f"{path!r} is not a key store: it holds other tables{shown_tables(tables)}; "
            "nothing was added to it: give the data keys a file of their own, kept apart "
            "from the events and the audit log (every copy of that file would carry them)"
        )


def _create_private(path: str) -> None:
    """Make the key file, if it does not exist yet, readable and writable by its owner
    only (0600): SQLite gives its ``-wal`` and ``-shm`` files the same mode.

    Wrapped keys are safe only while the master key is; a copy of the file taken before
    a shred lets whoever later gets the master key read the shredded data, so other
    users of the machine get no copy. A file that exists keeps its mode (the owner's
    choice), and a path that cannot be made here is left to SQLite to report.
    """
    if path in ("", ":memory:"):
        return
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError:
        pass  # it exists (kept as it is), or SQLite names the failure when opening it
