"""The file of an audit log: an SQLite database with its entries and its key marker.

``audit_log`` holds each entry as stored (sequence, body, hash); ``audit_meta`` the key
marker written when the file is made (:func:`mark`). An entry is appended after the
file's head in one write transaction (:func:`append`), so writers sharing the file
take turns; readers use connections of their own (:func:`reader`), a page at a time.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from .._errors import ConfigurationError, StoreError
from .._sqlite import write_transaction
from .._text import shown
from ._audit_chain import Chain
from ._audit_entries import GENESIS, AuditEntry

__all__ = [
    "META_SCHEMA",
    "READ_PAGE",
    "SCHEMA",
    "append",
    "check_not_foreign",
    "mark",
    "open_existing",
    "paged",
    "read_marker",
    "reader",
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
        raise StoreError(f"could not open the audit log {path!r}: {exc}") from exc
    return marker


def check_not_foreign(path: str) -> None:
    """Refuse to make an audit log of a database that holds other tables (an event
    store's, another application's), before anything writes to it.

    A file that cannot be read here is left to the opening that follows, which names
    what is wrong with it.
    """
    file = Path(path)
    try:
        if file.stat().st_size == 0:
            return
        connection = sqlite3.connect(f"{file.absolute().as_uri()}?mode=ro", uri=True)
    except (OSError, sqlite3.Error):
        return
    try:
        tables = {
            name
            for (name,) in connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%'"
            )
        }
    except sqlite3.Error:
        return
    finally:
        connection.close()
    if not tables or "audit_log" in tables:
        return
    shown_tables = ", ".join(sorted(tables)[:4]) + (", ..." if len(tables) > 4 else "")
    what = " (an event store)" if {"events", "streams"} <= tables else ""
    raise ConfigurationError(
        f"{path!r} is not an audit log: it holds other tables{what}: {shown_tables}; "
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


def reader(path: str, read_only: bool, busy_timeout: float) -> sqlite3.Connection:
    """A new connection that only reads the log file at ``path``."""
    mode = "ro" if read_only else "rw"  # never creates a file that went missing
    uri = f"{Path(path).absolute().as_uri()}?mode={mode}"
    return sqlite3.connect(uri, uri=True, isolation_level=None, timeout=busy_timeout)


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


def paged(cursor: sqlite3.Cursor) -> Iterator[tuple[int, Any, Any]]:
    """The rows of ``cursor``, fetched :data:`READ_PAGE` at a time."""
    while True:
        page = cursor.fetchmany(READ_PAGE)
        if not page:
            return
        yield from page


def open_existing(path: str) -> sqlite3.Connection:
    """A read-only connection to the audit log at ``path``, checked to be one."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"no audit log at {path!r}")
    not_a_log = ConfigurationError(f"{path!r} is not an audit log (no audit_log table)")
    connection = sqlite3.connect(
        f"{file.absolute().as_uri()}?mode=ro", uri=True, check_same_thread=False
    )
    try:
        columns = {row[1] for row in connection.execute("PRAGMA table_info(audit_log)")}
    except sqlite3.OperationalError as exc:  # cannot be read (permissions, I/O)
        connection.close()
        raise StoreError(f"could not open the audit log {path!r}: {exc}") from exc
    except sqlite3.DatabaseError:  # not an SQLite file at all
        connection.close()
        raise not_a_log from None
    if not {"sequence", "body", "hash"} <= columns:
        connection.close()
        raise not_a_log
    return connection


def _text(value: object) -> str:
    """A stored hash as text, whatever an edit of the file put there."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return repr(value)
