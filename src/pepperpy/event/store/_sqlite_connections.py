"""How the SQLite backend reaches its file, as the base of
:class:`~pepperpy.event.store.sqlite.SQLiteBackend`.

The writer thread started and the file opened (and migrated) through it before anything
else touches the file, or, read-only, the file checked to be an event store of this
schema; a writable store that may not create its file checks it first. Reads run on a
small pool of threads, each with its own connection (``query_only``, or opened
read-only), and never on a file that replaced the one opened. ``close()`` releases it
all in a thread of its own; around ``os.fork()`` the transaction and reads under way
are waited for, and a forked child abandons the parent's threads and connections.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from .._errors import ClosedError, StoreError
from .._sqlite import abandon, check_busy_timeout, open_read_only, track_forks
from ._sqlite_held import Commits, Held, dropped, release
from ._sqlite_probe import HeadProbe
from ._sqlite_schema import (
    BUSY_TIMEOUT,
    MATCHING_FROM,
    READ_IT_IMMUTABLE,
    TIMED_FROM,
    check_event_store,
    check_file,
    check_schema_version,
    connect,
    file_identity,
    named_error,
    wal_size,
)
from ._sqlite_writer import Writer
from .base import MultiAppend, PendingAppend

T = TypeVar("T")

_READERS = 2


def _retrieved(future: asyncio.Future[None]) -> None:
    """Mark an opening job's outcome as seen: its callers read it from ``opened``."""
    if not future.cancelled():
        future.exception()


def _nothing(connection: sqlite3.Connection) -> None:
    """The writer's first job: it opens (and migrates) the file, then does nothing."""


def _unwritten(error: StoreError) -> StoreError:
    """The failure to open (or migrate) the file, said to a write that waited for it:
    nothing of that call was written (``written=False``); SQLite's error (the lock held
    by another process, a full disk) says so in words too, a refusal of the file ("left
    as it is") already does. The error itself is shared by every caller that waited,
    reads included, and is left as it is."""
    if error.written is not None or type(error) is not StoreError:
        return error
    said = isinstance(error.__cause__, sqlite3.Error)
    unwritten = StoreError(f"{error}; nothing of this call was written" if said else str(error))
    unwritten.written = False
    return unwritten


class SQLiteConnections:
    """The writer, the read threads and their connections of one SQLite file: opened on
    first use, released by :meth:`close`, abandoned in a forked child."""

    def __init__(
        self,
        path: str,
        *,
        synchronous: str = "FULL",
        busy_timeout: float = BUSY_TIMEOUT,
        create: bool = True,
        read_only: bool = False,
        immutable: bool = False,
    ) -> None:
        if not isinstance(synchronous, str):
            raise TypeError(
                f"synchronous must be a str (FULL, EXTRA, NORMAL or OFF), got {synchronous!r}"
            )
        if synchronous.upper() not in ("FULL", "EXTRA", "NORMAL", "OFF"):
            raise ValueError(f"unknown SQLite synchronous mode {synchronous!r}")
        busy_timeout = check_busy_timeout(busy_timeout, "busy_timeout", ValueError)
        #: absolute: every connection (the writer's, each read thread's, opened later)
        #: must open the file this store was made for, after an os.chdir() too
        self.path = path = os.path.abspath(path)
        #: whether first use may create the store (False: the file must already be one)
        self.create = create
        #: reads only (``mode=ro``), and nothing writes the file at all (``immutable=1``)
        self.read_only = read_only or immutable
        self.immutable = immutable
        #: a read-only store's file, as opened (an absolute path), and its identity
        self._file = os.path.abspath(path)
        self._identity: tuple[int, int] | None = None
        self._synchronous = synchronous.upper()
        self._busy_timeout = busy_timeout
        #: the writer, the read threads and their connections (see Held)
        self._held = Held()
        self._local = threading.local()
        #: held while a connection opens (and by fork(), with the others: see _fork_hold)
        self._gate = threading.Lock()
        #: held by the writer thread around each transaction, opening and closing its file
        self._writer_gate = threading.Lock()
        self._commits = Commits()
        self._probe = HeadProbe()
        self._open = False  # the writer runs and the schema is in place
        self._checked = False  # read-only: the file is an event store of this schema
        #: the file has type_index and category_index (False: a read-only store of the
        #: schema before them, whose filtered reads scan)
        self._matching = True
        self._timed = True  #: the file has time_blocks (False: a read-only older schema)
        self._closed = False
        #: the release of the file once close() began (its thread sets it): every close()
        #: waits for it, on any loop, and cancelling one does not stop it
        self._closing: Future[None] | None = None
        self._close_lock = threading.Lock()
        track_forks(self)
        # dropped without close(): release the threads and connections, with a warning;
        # not at exit (the writer is a daemon thread, and every acknowledged append is
        # committed already)
        weakref.finalize(self, dropped, self._held, path).atexit = False

    # what it holds, for inspection (tests)
    @property
    def _writer(self) -> Writer | None:
        return self._held.writer

    @property
    def _pool(self) -> ThreadPoolExecutor | None:
        return self._held.pool

    @property
    def _connections(self) -> list[tuple[sqlite3.Connection, threading.Lock]]:
        return self._held.connections

    # -- plumbing ---------------------------------------------------------------------

    async def _write(
        self,
        work: Callable[[sqlite3.Connection], T] | None,
        append: PendingAppend | MultiAppend | None = None,
        changes: str | bool | None = None,
    ) -> T:
        if self.read_only and not self._closed:
            raise StoreError(
                f"SQLite: {self._file!r} is open read-only ({self._mode()}): appends, "
                "deletes and snapshots are refused; open it without "
                f"{self._mode()} to write"
            )
        if self._open:
            writer = self._held.writer
        else:
            try:
                writer = await self._opened()
            except StoreError as exc:
                raise _unwritten(exc) from exc.__cause__
        if self._closed or writer is None:
            raise ClosedError("the event store is closed")
        return await writer.submit(work, append, changes)

    def _mode(self) -> str:
        return "immutable=1" if self.immutable else "mode=ro"

    async def _opened(self) -> Writer | None:
        """The writer, once the file and its schema are in place (None: read-only).

        The first call starts it; until the file is open every caller asks the writer for
        it (a job that does nothing, which makes the writer open and migrate the file)
        and waits on the writer's thread-safe ``opened`` future, so callers on any event
        loop, or after the loop that started the writer has gone, are answered. Should
        the open fail (say the file's directory does not exist yet), they get the error
        and the writer ends; the next call starts a new one.
        """
        if self._closed:
            raise ClosedError("the event store is closed")
        if self.read_only:
            await asyncio.to_thread(self._check_read_only)
            if self._closed:
                raise ClosedError("the event store is closed")
            self._checked = True
            return None
        held = self._held
        if held.writer is None and not self.create:
            await asyncio.to_thread(self._check_event_store)
            if self._closed:
                raise ClosedError("the event store is closed")
        writer = held.writer
        if writer is None:
            # it reports commits to _commits, never to the backend (see Commits)
            writer = held.writer = Writer(
                self.path,
                self._synchronous,
                self._commits.wake,
                self._busy_timeout,
                self._writer_gate,
            )
            writer.start()
        if not writer.opened.done():
            writer.submit(_nothing).add_done_callback(_retrieved)
        try:
            await asyncio.shield(asyncio.wrap_future(writer.opened))
        except Exception:
            if held.writer is writer:  # the first to see the failure ends this writer
                held.writer = None
                writer.stop()
            await asyncio.to_thread(writer.join)
            raise
        if self._closed:
            raise ClosedError("the event store is closed")
        self._open = True
        return writer

    async def _read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        if not (self._open or self._checked):
            await self._opened()  # never read a file without the schema
        pool = self._held.pool
        if pool is None:
            pool = self._held.pool = ThreadPoolExecutor(
                _READERS, thread_name_prefix="pepperpy-sqlite-read"
            )
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(pool, self._run_read, work)

    def _run_read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        reader: tuple[sqlite3.Connection, threading.Lock] | None
        reader = getattr(self._local, "reader", None)
        writer = self._held.writer
        file = self._file if writer is None else writer.file
        try:
            # never read a file that replaced ours
            if writer is not None:
                check_file(file, writer.identity)
            elif self.read_only:
                check_file(file, self._identity)
                if self.immutable:
                    self._check_unwritten(file)
            if reader is None:
                reader = self._local.reader = self._new_reader()
            connection, gate = reader
            with gate:
                return work(connection)
        except sqlite3.Error as exc:
            raise named_error(exc, file) from exc

    def _new_reader(self) -> tuple[sqlite3.Connection, threading.Lock]:
        """A read-only connection for this thread, and the lock held while it is used."""
        with self._gate:
            if self.read_only:
                connection = open_read_only(
                    self.path, timeout=self._busy_timeout, immutable=self.immutable
                )
            else:
                connection = connect(self.path, self._synchronous, self._busy_timeout)
                try:
                    connection.execute("PRAGMA query_only = ON")
                except BaseException:
                    connection.close()
                    raise
            reader = (connection, threading.Lock())
            with self._held.connections_lock:
                self._held.connections.append(reader)
        return reader

    def _check_event_store(self) -> None:
        with self._gate:
            check_event_store(self.path, self._busy_timeout, hint=READ_IT_IMMUTABLE)

    def _check_read_only(self) -> None:
        """Before a read-only store's first read: an existing event store, of this schema.

        Nothing is written, nor migrated; ``immutable`` also needs an empty ``-wal``.
        """
        with self._gate:
            self._file = file = os.path.abspath(self.path)
            if not os.path.exists(file):
                raise StoreError(
                    f"no event store at {file!r}: a read-only store ({self._mode()}) is "
                    "never created; check the path"
                )
            if self.immutable:
                self._check_unwritten(file)
            version = check_event_store(
                file,
                self._busy_timeout,
                self.immutable,
                hint="mode=ro cannot make them in a read-only directory: if nothing writes "
                "the file, open it with immutable=1 instead",
            )
            check_schema_version(file, version)
            self._matching = version >= MATCHING_FROM
            self._timed = version >= TIMED_FROM
            if self._identity is None:
                self._identity = file_identity(file)

    def _check_unwritten(self, file: str) -> None:
        """Refuse, with ``immutable``, a file whose ``-wal`` holds commits SQLite would not
        read (it reads the database file alone then)."""
        if wal_size(file) > 0:
            raise StoreError(
                f"SQLite: {file!r} has a non-empty write-ahead log ({file}-wal): it is being "
                "written, or was not closed cleanly, and immutable=1 would not see the "
                "commits in it; open it with mode=ro instead (once from a writable "
                "directory, or after a writer closed it cleanly, if it is in a read-only one)"
            )

    async def close(self) -> None:
        """Release the file: the writer writes what is queued and ends, the read threads
        end, and every connection closes.

        The release runs in a thread of its own, so cancelling ``close()`` (a timeout at
        shutdown) stops only the wait: the release goes on, and every call, the first or
        a later one, on any event loop, returns once it is complete.
        """
        with self._close_lock:
            closing = self._closing
            if closing is None:
                self._closed = True
                self._commits.wake()
                held = self._held
                held.closed = True  # released here: the finalizer has nothing left to do
                writer, pool = held.writer, held.pool
                if writer is not None:
                    writer.stop()  # on this loop: the appends of its current pass still go in
                if pool is not None:
                    pool.shutdown(wait=False, cancel_futures=False)  # no new reads
                closing = self._closing = Future()
                # running: a cancelled wait (wrap_future cancels its source) leaves it be
                closing.set_running_or_notify_cancel()
                threading.Thread(
                    target=release,
                    args=(held, writer, pool, closing),
                    name="pepperpy-sqlite-close",
                ).start()
        await asyncio.wrap_future(closing)

    # -- fork -------------------------------------------------------------------------

    def _fork_hold(self, held: list[threading.Lock]) -> None:
        """Wait for the transaction and the reads under way; hold off new ones."""
        for lock in (self._gate, self._writer_gate):
            lock.acquire()
            held.append(lock)
        with self._held.connections_lock:
            gates = [gate for _, gate in self._held.connections]
        for gate in gates:
            gate.acquire()
            held.append(gate)

    def _fork_child(self) -> None:
        """In a forked child: abandon the parent's connections and threads; reopen lazily.

        The parent's writer thread and read threads do not exist here. Its appends still
        queued (or batched on its event loop) are the parent's to write: the child's
        writer starts with an empty queue, so none is ever written twice.
        """
        held = self._held  # the same object: the finalizer registered in the parent has it
        writer, held.writer = held.writer, None
        if writer is not None:
            abandon(writer.connection)
        for connection, _ in held.connections:
            abandon(connection)
        held.connections = []
        held.connections_lock = threading.Lock()
        self._gate = threading.Lock()
        self._writer_gate = threading.Lock()
        self._local = threading.local()
        held.pool = None  # its threads are gone; never shut down (that would join them)
        self._commits = Commits(self._commits.head)
        self._probe = HeadProbe()  # a read under way in the parent never ends here
        self._close_lock = threading.Lock()
        self._closing = None  # a release under way in the parent is the parent's
        self._open = False  # the next call starts a writer, which opens the file
