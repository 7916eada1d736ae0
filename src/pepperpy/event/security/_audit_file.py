"""The file of an audit log: an SQLite database with its entries and its key marker.

``audit_log`` holds each entry as stored (sequence, body, hash); ``audit_meta`` the key
marker written when the file is made (:func:`mark`). An entry is appended after the
file's head in one write transaction (:func:`append`), so writers sharing the file
take turns; readers use connections of their own (:func:`reader`), a page at a time.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from .._errors import ConfigurationError, StoreError
from .._sqlite import roll_back, write_transaction
from .._text import shown
from ..store._sqlite_causes import named_error, unwritable_directory
from ..store._sqlite_schema import wal_size
from ._audit_chain import Chain
from ._audit_entries import GENESIS, AuditEntry
from ._own_file import other_tables, shown_tables

__all__ = [
    "META_SCHEMA",
    "READ_PAGE",
    "SCHEMA",
    "append",
    "check_not_foreign",
    "check_unchanged",
    "file_state",
    "mark",
    "open_existing",
    "opening_error",
    "paged",
    "read_marker",
    "reader",
    "snapshot",
]

#: rows read from the file at a time by verify() and iter_entries(): memory stays bounded
READ_PAGE = 500
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS audit_log ("
    " sequence INTEGER PRIMARY KEY, body BLOB NOT NULL, hash TEXT NOT NULL)"
)
#: facts about the log file, written once when it is created: its key marker
META_SCHEMA = "CREATE TABLE IF NOT EXISTS audit_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)"
#: the name of the key marker in ``audit_meta``: ``none``, or the key's fingerprint
_MARKER = "hmac_key"


def mark(db: sqlite3.Connection, path: str, chain: Chain) -> str | None:
    """Create the tables if missing and return the file's key marker.

    A new file gets the marker of ``chain``. A file written before files had one (it
    has entries but no marker) gets it only if its first entry verifies under that key
    setting; otherwise it stays unmarked (``None``).
    """
    try:
        marker = read_marker(db)
        if marker is not None:
            return marker
        with write_transaction(db):  # one writer at a time marks a new file
            db.execute(SCHEMA)
            db.execute(META_SCHEMA)
            marker = read_marker(db)
            if marker is None:
                first = db.execute(
                    "SELECT sequence, body, hash FROM audit_log ORDER BY sequence LIMIT 1"
                ).fetchone()
                if first is None or chain.first_verifies(*first):
                    marker = chain.own_marker()
                    db.execute(
                        "INSERT INTO audit_meta (name, value) VALUES (?, ?)",
                        (_MARKER, marker),
                    )
    except sqlite3.Error as exc:
        raise opening_error(exc, path) from exc
    return marker


#: what a writer's error says to do when the log's directory cannot be written
_READ_IT = "to verify or show the log, open it with read_only=True (as pepperpy-event audit does)"


def opening_error(error: sqlite3.Error, path: str, hint: str = _READ_IT) -> BaseException:
    """SQLite's ``error`` opening the log at ``path``, as a named :class:`StoreError`."""
    return named_error(error, path, head=f"could not open the audit log {path!r}", hint=hint)


def check_not_foreign(path: str) -> None:
    """Refuse to make an audit log of a database that holds other tables (an event
    store's, another application's), before anything writes to it.

    A file that cannot be read here is left to the opening that follows, which names
    what is wrong with it.
    """
    tables = other_tables(path, "audit_log")
    if tables:
        raise ConfigurationError(
            f"{path!r} is not an audit log: it holds other tables{shown_tables(tables)}; "
            "nothing was added to it: give the audit log a file of its own"
        )


def append(
    db: sqlite3.Connection,
    path: str | None,
    chain: Chain,
    action: str,
    target: str,
    principal: str | None,
    outcome: str,
    details: Mapping[str, Any] | None,
    at: datetime,
) -> AuditEntry:
    """Record the entry after the file's head, in one write transaction."""
    try:
        with write_transaction(db):  # the write lock first: no writer appends meanwhile
            row = db.execute(
                "SELECT sequence, hash FROM audit_log ORDER BY sequence DESC LIMIT 1"
            ).fetchone()
            # a tampered head (not a hash) still links: verify() reports that row
            head = (-1, GENESIS) if row is None else (row[0], _text(row[1]))
            entry, body = chain.entry_after(head, action, target, principal, outcome, details, at)
            db.execute(
                "INSERT INTO audit_log (sequence, body, hash) VALUES (?, ?, ?)",
                (entry.sequence, body, entry.hash),
            )
    except (sqlite3.Error, OverflowError) as exc:  # overflow: a forged huge sequence
        raise StoreError(
            f"could not record {shown(action)} {shown(target)} in the audit log {path!r}: {exc}"
        ) from exc
    return entry


def reader(
    path: str, read_only: bool, busy_timeout: float, immutable: bool = False
) -> sqlite3.Connection:
    """A new connection that only reads the log file at ``path`` (``immutable``: as a
    file nothing writes, see :func:`open_existing`)."""
    # never creates a file that went missing
    query = "immutable=1" if immutable else "mode=ro" if read_only else "mode=rw"
    uri = f"{Path(path).absolute().as_uri()}?{query}"
    return sqlite3.connect(uri, uri=True, isolation_level=None, timeout=busy_timeout)


#: a log file read as immutable, as it was: (inode, size, modification time), its -wal's size
FileState = tuple[int, int, int, int]

_IMMUTABLE = (
    "it is read as immutable, its directory being one SQLite cannot write, which holds "
    "only for a log that nothing writes"
)


def file_state(path: str) -> FileState:
    """The state of a log read as immutable, checked again after reading it: SQLite
    then reads the file without locks, and a change meanwhile could mislead it."""
    info = os.stat(path)
    return info.st_ino, info.st_size, info.st_mtime_ns, wal_size(path)


def check_unchanged(path: str, before: FileState | None) -> None:
    """Raise :class:`StoreError` if the log read as immutable changed from ``before``:
    what was read may mix two states of the file (none to check: ``before`` is None)."""
    if before is None:
        return
    try:
        after: FileState | None = file_state(path)
    except OSError:
        after = None
    if after != before:
        raise StoreError(
            f"the audit log {path!r} changed while it was read: {_IMMUTABLE}; read it "
            "again, or where its directory can be written"
        )


def _check_unlogged(path: str, state: FileState) -> None:
    """Refuse a log read as immutable whose ``-wal`` holds entries (``state[3]``): a
    writer has it, and SQLite, reading the file alone, would not see them."""
    if state[3] > 0:
        raise StoreError(
            f"the audit log {path!r} is being written (its write-ahead log {path}-wal "
            f"holds entries): {_IMMUTABLE}; read it where its directory can be written"
        )


def read_marker(db: sqlite3.Connection) -> str | None:
    """The file's key marker; ``None`` if it has none (a file made before markers)."""
    if (
        db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'audit_meta'"
        ).fetchone()
        is None
    ):
        return None
    row = db.execute("SELECT value FROM audit_meta WHERE name = ?", (_MARKER,)).fetchone()
    return None if row is None else _text(row[0])


@contextlib.contextmanager
def snapshot(
    path: str, read_only: bool, busy_timeout: float, immutable: bool
) -> Iterator[tuple[str | None, Iterator[tuple[int, Any, Any]]]]:
    """The key marker and the rows, oldest first, of the log file at ``path``, in one
    read transaction on a connection of its own (closed on leaving), read a page at a
    time: see :meth:`AuditLog._snapshot`.

    ``immutable`` (a log :func:`open_existing` found in a directory SQLite cannot
    write): SQLite reads the file without locks, so a log found written since it was
    opened (a ``-wal`` with entries) or while it was read raises :class:`StoreError`.
    """
    state: FileState | None = None
    if immutable:
        state = file_state(path)
        _check_unlogged(path, state)
    db = reader(path, read_only, busy_timeout, immutable)
    try:
        db.execute("BEGIN")  # one snapshot: the marker with the rows
        marker = read_marker(db)
        cursor = db.execute("SELECT sequence, body, hash FROM audit_log ORDER BY sequence")
        try:
            yield marker, paged(cursor)
        except sqlite3.Error:  # a damaged file, or one read while it changed?
            check_unchanged(path, state)
            raise
        check_unchanged(path, state)
    finally:
        roll_back(db, quiet=True)  # it only read
        db.close()


def paged(cursor: sqlite3.Cursor) -> Iterator[tuple[int, Any, Any]]:
    """The rows of ``cursor``, fetched :data:`READ_PAGE` at a time."""
    while True:
        page = cursor.fetchmany(READ_PAGE)
        if not page:
            return
        yield from page


def open_existing(path: str) -> tuple[sqlite3.Connection, bool]:
    """A read-only connection to the audit log at ``path``, checked to be one, and
    whether it reads the file as immutable.

    SQLite's ``mode=ro`` first. A log in WAL mode needs its ``-wal`` and ``-shm`` files
    beside it even to be read; a log closed cleanly has none, and in a directory that
    cannot be written (a read-only mount, an immutable directory, no permission) they
    cannot be made. There, with no ``-wal`` holding entries, nothing can be writing the
    log, and it is read as immutable (SQLite's ``immutable=1``: the file alone, without
    locks); the readers check it did not change while they read it (:func:`file_state`).
    """
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"no audit log at {path!r}")
    not_a_log = ConfigurationError(f"{path!r} is not an audit log (no audit_log table)")
    immutable = False
    while True:
        query = "immutable=1" if immutable else "mode=ro"
        connection = sqlite3.connect(
            f"{file.absolute().as_uri()}?{query}", uri=True, check_same_thread=False
        )
        try:
            columns = {row[1] for row in connection.execute("PRAGMA table_info(audit_log)")}
        except sqlite3.OperationalError as exc:  # cannot be read (permissions, I/O)
            connection.close()
            if immutable or not _needs_immutable(exc, path):
                raise opening_error(exc, path, hint="") from exc
            immutable = True
            continue
        except sqlite3.DatabaseError:  # not an SQLite file at all
            connection.close()
            raise not_a_log from None
        break
    if not {"sequence", "body", "hash"} <= columns:
        connection.close()
        raise not_a_log
    return connection, immutable


def _needs_immutable(error: sqlite3.OperationalError, path: str) -> bool:
    """Whether ``error`` is SQLite unable to make the ``-wal`` and ``-shm`` files in the
    log's directory, which only an immutable read does without; refused, saying why,
    when the ``-wal`` holds entries such a read would not see."""
    name = getattr(error, "sqlite_errorname", None)
    if name not in ("SQLITE_CANTOPEN", "SQLITE_READONLY_DIRECTORY"):
        return False
    why = unwritable_directory(path)
    if why is None:
        return False
    if wal_size(path) > 0:
        raise StoreError(
            f"could not open the audit log {path!r}: its directory cannot be written "
            f"({why}), so SQLite cannot make the -shm file it needs to read the entries "
            f"in its non-empty write-ahead log ({path}-wal), written since the log was "
            "last closed cleanly: copy the file and its -wal to a directory that can be "
            "written and read the copy"
        ) from error
    return True


def _text(value: object) -> str:
    """A stored hash as text, whatever an edit of the file put there."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return repr(value)
