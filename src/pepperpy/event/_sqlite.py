"""Opening the SQLite files the library keeps: the store, checkpoints, keys, the audit log.

And keeping them usable in a child made by ``os.fork()`` (``multiprocessing``'s fork
start method, say). SQLite connections must not be carried across a fork: the child
inherits their locks' bookkeeping but not the locks (POSIX locks belong to a process),
and closing one in the child may checkpoint and delete the write-ahead log under the
parent (https://www.sqlite.org/howtocorrupt.html, section 2.6). So every object here
that holds connections is *tracked*, and Python's at-fork hooks do three things:

* before the fork, in the parent, each object takes the locks it holds around every use
  of a connection, so the fork happens between two transactions: a connection caught
  in the middle of one would leave the child unable to write to the file at all
  ("database is locked", for ever), since SQLite in the child would count that
  transaction's lock as its own;
* after it, the parent lets go of them, and nothing else changes there;
* in the child, each object abandons the connections it inherited (never closed, never
  freed: see :func:`abandon`), forgets its threads, and opens connections of its own on
  first use.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Protocol

from ._seconds import check_seconds

__all__ = [
    "MAX_BUSY_TIMEOUT",
    "ForkAware",
    "abandon",
    "check_busy_timeout",
    "open_read_only",
    "open_wal",
    "roll_back",
    "track_forks",
    "write_transaction",
]

#: a busy timeout of this many seconds or more overflows SQLite's milliseconds (a C int):
#: Python's ``sqlite3`` then sets 0, and a locked file fails at once instead of waiting
MAX_BUSY_TIMEOUT = 1e6


def check_busy_timeout(
    value: object, name: str, error: type[Exception], *, zero: bool = True
) -> float:
    """``value`` as a busy timeout in seconds, or ``error`` naming ``name``.

    A number of seconds as :func:`~pepperpy.event._seconds.check_seconds` takes it (0
    allowed unless ``zero`` is False: a locked file fails at once), less than
    :data:`MAX_BUSY_TIMEOUT`.
    """
    seconds = check_seconds(value, name, zero=zero, error=error)
    if seconds >= MAX_BUSY_TIMEOUT:
        raise error(
            f"{name} must be less than {MAX_BUSY_TIMEOUT:.0f} seconds (SQLite counts it in "
            f"milliseconds, in a C int), got {value!r}"
        )
    return seconds


def open_wal(
    path: str | Path,
    *,
    synchronous: str = "FULL",
    timeout: float = 5.0,
    schema: str | None = None,
) -> sqlite3.Connection:
    """An autocommit connection to ``path`` in WAL mode, usable from any thread.

    ``synchronous=FULL`` (the default) makes every commit durable; ``timeout`` is how
    long a write waits for another connection's lock; ``schema`` is one statement run
    on opening (a ``CREATE TABLE IF NOT EXISTS``).
    """
    connection = sqlite3.connect(
        path, isolation_level=None, check_same_thread=False, timeout=timeout
    )
    try:
        _enter_wal(connection, timeout)
        connection.execute(f"PRAGMA synchronous={synchronous}")
        if schema is not None:
            connection.execute(schema)
    except BaseException:
        connection.close()
        raise
    return connection


def open_read_only(
    path: str | Path, *, timeout: float = 5.0, immutable: bool = False
) -> sqlite3.Connection:
    """An autocommit connection that can only read ``path`` (SQLite's ``mode=ro``).

    Nothing is written to the database file, and no WAL switch is tried. SQLite still
    makes the ``-wal`` and ``-shm`` files beside a database in WAL mode if they are
    missing and the directory is writable; in a read-only directory it cannot, and
    opening fails unless they exist. ``immutable`` tells SQLite that nothing writes the
    file at all: it then reads the database file alone, without locks or those files,
    which also works in a read-only directory, but it never sees what a ``-wal`` file
    holds (the caller checks there is none).
    """
    query = "immutable=1" if immutable else "mode=ro"
    connection = sqlite3.connect(
        f"{Path(path).absolute().as_uri()}?{query}",
        uri=True,
        isolation_level=None,
        check_same_thread=False,
        timeout=timeout,
    )
    try:
        connection.execute("PRAGMA query_only = ON")
    except BaseException:
        connection.close()
        raise
    return connection


def roll_back(connection: sqlite3.Connection, *, quiet: bool = False) -> None:
    """ROLLBACK if a transaction is still open.

    Some errors end the transaction themselves (a failed COMMIT on a full disk, say): a
    ROLLBACK then fails with "no transaction is active", which would hide the error
    that matters. ``quiet``: a ROLLBACK that fails all the same is ignored, for a
    caller raising the error that matters already, or one that only read.
    """
    if connection.in_transaction:
        try:
            connection.execute("ROLLBACK")
        except sqlite3.Error:
            if not quiet:
                raise


class write_transaction:  # named as the function it was: ``with write_transaction(c):``
    """The block in one write transaction: ``BEGIN IMMEDIATE`` (the write lock first, so
    writers sharing the file take turns), ``COMMIT`` once it is done.

    On any error, the block's or the ``COMMIT``'s, what is still open is rolled back
    quietly (:func:`roll_back`) and that error is raised as it was: a failed ``COMMIT``'s
    real error (a full disk), never one of the ``ROLLBACK`` after it.

    A class rather than a generator: the store's group commit runs one per group, and
    this costs it a third of ``contextlib.contextmanager``'s overhead.
    """

    __slots__ = ("connection",)

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection

    def __enter__(self) -> None:
        self.connection.execute("BEGIN IMMEDIATE")

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            roll_back(self.connection, quiet=True)
            return
        try:
            self.connection.execute("COMMIT")
        except BaseException:
            roll_back(self.connection, quiet=True)
            raise


def _enter_wal(connection: sqlite3.Connection, timeout: float) -> None:
    """Switch to WAL mode, waiting up to ``timeout`` for connections doing the same.

    Switching a file that is not in WAL mode yet (a new one) takes its read lock and then
    the exclusive lock. When several connections open such a file at once, each holds the
    read lock the others wait for, and SQLite answers "database is locked" at once instead
    of calling the busy handler (it would wait for ever, sqlite3_busy_handler's docs say):
    the busy timeout does not apply. So that case is retried here, until ``timeout``. Once
    one of them has switched, the mode is stored in the file and later opens pass at once.
    """
    deadline = time.monotonic() + timeout
    pause = 0.001
    while True:
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            if time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


class ForkAware(Protocol):
    """An object holding SQLite connections (or locks) that a forked child must not use."""

    def _fork_hold(self, held: list[threading.Lock]) -> None:
        """Acquire every lock held around a use of a connection, appending each to ``held``.

        Called in the parent just before a fork; the locks are released after it.
        """

    def _fork_child(self) -> None:
        """In the child: replace every lock, abandon every connection, open anew lazily."""


class OneConnection:
    """:class:`ForkAware` for an object using one connection, ``_db``, under ``_lock``.

    The checkpoint store, the key store and the audit log are such objects; each opens
    ``_db`` again on first use when it finds it None (as in a forked child).
    """

    _db: sqlite3.Connection | None
    _lock: threading.Lock

    def _fork_hold(self, held: list[threading.Lock]) -> None:
        self._lock.acquire()
        held.append(self._lock)

    def _fork_child(self) -> None:
        abandon(self._db)
        self._db = None
        self._lock = threading.Lock()


_owners: weakref.WeakSet[ForkAware] = weakref.WeakSet()
_owners_lock = threading.Lock()
#: during a fork: each tracked object (kept alive until after it) and the locks it holds
_holding: list[tuple[ForkAware, list[threading.Lock]]] = []
#: keeps an object alive for the rest of the process, exit included (see ``abandon``)
_keep: Callable[[object], object] | None = None
#: where ``_keep`` puts them where ``ctypes.pythonapi`` is missing (not CPython)
_abandoned: list[object] = []


def track_forks(owner: ForkAware) -> None:
    """Have ``owner`` quiesced before every ``os.fork()`` and reset in the child after it."""
    with _owners_lock:
        _owners.add(owner)


def abandon(connection: sqlite3.Connection | None) -> None:
    """Never close ``connection``, which this forked child inherited from its parent.

    ``sqlite3`` closes a connection when it is freed, and an interpreter that shuts
    down normally frees what its modules hold; either would run SQLite's close in the
    child (which may checkpoint and delete the parent's WAL). So the connection gets a
    reference that is never dropped: it lives until the process ends, and the operating
    system then closes its files without SQLite doing anything.
    """
    if connection is not None:
        (_keep or _abandoned.append)(connection)


def _prepare_keep() -> None:
    """Find ``Py_IncRef`` in the parent (importing ctypes in every child would cost each)."""
    global _keep
    if _keep is not None:
        return
    try:
        import ctypes

        _keep = ctypes.PYFUNCTYPE(None, ctypes.py_object)(("Py_IncRef", ctypes.pythonapi))
    except (ImportError, AttributeError):  # not CPython: keep them in a list
        _keep = _abandoned.append


def _before_fork() -> None:
    _owners_lock.acquire()
    owners = list(_owners)
    if owners:
        _prepare_keep()
    for owner in owners:
        held: list[threading.Lock] = []
        _holding.append((owner, held))
        owner._fork_hold(held)


def _release() -> None:
    holding = _holding[:]
    _holding.clear()
    for _, held in reversed(holding):
        for lock in reversed(held):
            lock.release()
    _owners_lock.release()


def _after_fork_in_child() -> None:
    try:
        for owner, _ in _holding:
            owner._fork_child()
    finally:
        _release()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(
        before=_before_fork, after_in_parent=_release, after_in_child=_after_fork_in_child
    )
