"""A tamper-evident audit log: every entry carries the hash of the one before it.

Each entry's hash is ``SHA-256(previous hash || canonical JSON of the entry)``, or an
HMAC-SHA256 with a secret key when one is given, so changing, inserting, removing or
reordering an entry breaks every later hash and :meth:`AuditLog.verify` finds the first
bad entry. With a key, someone who can write the log but does not hold the key cannot
recompute a consistent chain either.

No chain can tell that its *newest* entries were cut off (or all of them): what is left
is still a valid chain. :meth:`AuditLog.verify` therefore reports the head (how many
entries, the last hash); keep it somewhere the log's writers cannot change, and pass it
back as ``expect_count``/``expect_head`` to check that nothing up to it went missing.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from .._errors import ClosedError, ConfigurationError
from .._sqlite import open_wal

__all__ = ["AuditEntry", "AuditLog", "AuditVerification"]

GENESIS = "0" * 64


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One audited action."""

    sequence: int
    at: datetime
    principal: str | None
    action: str
    target: str
    outcome: str
    details: Mapping[str, Any] = field(default_factory=dict)
    previous_hash: str = GENESIS
    hash: str = ""

    def body(self) -> bytes:
        """The canonical bytes the hash covers (everything but the hash itself)."""
        return orjson.dumps(
            {
                "sequence": self.sequence,
                "at": self.at.isoformat(),
                "principal": self.principal,
                "action": self.action,
                "target": self.target,
                "outcome": self.outcome,
                "details": dict(self.details),
                "previous_hash": self.previous_hash,
            },
            option=orjson.OPT_SORT_KEYS,
        )


@dataclass(frozen=True, slots=True)
class AuditVerification:
    """The result of :meth:`AuditLog.verify`.

    ``checked`` entries verified before the first bad one (all of them when ``ok``);
    ``head`` is the hash of the last verified entry (``GENESIS`` for none): with
    ``checked`` it is the anchor to record and pass back to a later ``verify``.
    """

    ok: bool
    checked: int
    first_bad_sequence: int | None = None
    reason: str | None = None
    head: str = GENESIS


class AuditLog:
    """An append-only, hash-chained log of security-relevant actions.

    ``AuditLog()`` keeps entries in memory; ``AuditLog("path/audit.db")`` in an SQLite
    file (synchronous=FULL, so a recorded entry survives a crash), created if missing.
    ``key`` (bytes) turns the chain into an HMAC chain.

    ``read_only=True`` opens an existing log file to verify or show it and never writes
    to it: a missing file raises ``FileNotFoundError``, a file that is not an audit log
    ``ConfigurationError``, and :meth:`record` is refused.

    After :meth:`close` (or leaving a ``with``/``async with`` block) :meth:`record` and
    :meth:`arecord` raise :class:`~pepperpy.event.ClosedError`: an entry is never kept
    anywhere but where the log keeps them. A closed file log cannot be read either; a
    closed memory log can (its entries are all there is).
    """

    def __init__(
        self, path: str | None = None, *, key: bytes | None = None, read_only: bool = False
    ) -> None:
        if key is not None and (not isinstance(key, bytes) or len(key) < 16):
            raise ConfigurationError("the audit key must be at least 16 bytes")
        self._key = key
        self._path = path
        self._read_only = read_only
        self._entries: list[AuditEntry] = []
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._closed = False
        if path is None:
            if read_only:
                raise ConfigurationError("a read-only audit log needs the path of its file")
        elif read_only:
            self._db = _open_existing(path)
        else:
            self._db = open_wal(path, schema=SCHEMA)

    def _digest(self, previous: str, body: bytes) -> str:
        message = previous.encode() + body
        if self._key is not None:
            return hmac.new(self._key, message, hashlib.sha256).hexdigest()
        return hashlib.sha256(message).hexdigest()

    def record(
        self,
        action: str,
        target: str,
        *,
        principal: str | None = None,
        outcome: str = "ok",
        details: Mapping[str, Any] | None = None,
    ) -> AuditEntry:
        """Append an entry (thread-safe; durable before it returns when file-backed)."""
        if self._read_only:
            raise ConfigurationError(f"the audit log {self._path!r} was opened read-only")
        with self._lock:
            self._check_open()
            last = self._last()
            sequence = 0 if last is None else last.sequence + 1
            previous = GENESIS if last is None else last.hash
            draft = AuditEntry(
                sequence,
                datetime.now(UTC),
                principal,
                action,
                target,
                outcome,
                dict(details or {}),
                previous,
            )
            body = draft.body()
            entry = AuditEntry(
                draft.sequence,
                draft.at,
                principal,
                action,
                target,
                outcome,
                draft.details,
                previous,
                self._digest(previous, body),
            )
            if self._db is not None:
                self._db.execute(
                    "INSERT INTO audit_log (sequence, body, hash) VALUES (?, ?, ?)",
                    (sequence, body, entry.hash),
                )
            else:
                self._entries.append(entry)
            return entry

    async def arecord(self, action: str, target: str, **kwargs: Any) -> AuditEntry:
        """:meth:`record` without blocking the event loop on a file-backed log."""
        with self._lock:
            self._check_open()
        if self._db is None:
            return self.record(action, target, **kwargs)
        return await asyncio.to_thread(self.record, action, target, **kwargs)

    def _last(self) -> AuditEntry | None:
        if self._db is None:
            return self._entries[-1] if self._entries else None
        row = self._db.execute(
            "SELECT body, hash FROM audit_log ORDER BY sequence DESC LIMIT 1"
        ).fetchone()
        return None if row is None else _entry(row[0], row[1])

    def entries(self) -> list[AuditEntry]:
        """Every entry, oldest first."""
        with self._lock:
            self._check_readable()
            if self._db is None:
                return list(self._entries)
            rows = self._db.execute("SELECT body, hash FROM audit_log ORDER BY sequence")
            return [_entry(body, digest) for body, digest in rows]

    def verify(
        self, *, expect_count: int | None = None, expect_head: str | None = None
    ) -> AuditVerification:
        """Recompute the chain; report the first entry whose hash or link is wrong.

        The chain alone cannot show that its newest entries were removed. Pass the head
        recorded from an earlier ``verify`` (``checked`` as ``expect_count``, ``head``
        as ``expect_head``) to also fail when the log has fewer entries than then, or
        when the entry that was the head is gone or different. Entries appended since
        are fine: the log may only grow past its anchor.
        """
        expect_head = _anchor(expect_count, expect_head)
        anchor_at = 0 if expect_head == GENESIS else None  # entries up to the expected head
        previous = GENESIS
        checked = 0
        for expected_sequence, entry in enumerate(self._readable_entries()):
            if entry is None:
                unreadable = "entry is not readable"
                return AuditVerification(False, checked, expected_sequence, unreadable, previous)
            problem = self._problem(entry, expected_sequence, previous)
            if problem is not None:
                return AuditVerification(False, checked, entry.sequence, problem, previous)
            previous = entry.hash
            checked += 1
            if entry.hash == expect_head:
                anchor_at = checked
        return _against_anchor(checked, previous, anchor_at, expect_count, expect_head)

    def _problem(self, entry: AuditEntry, expected_sequence: int, previous: str) -> str | None:
        if entry.sequence != expected_sequence:
            return f"entry {expected_sequence} is missing"
        if entry.previous_hash != previous:
            return "link to the previous entry is broken"
        if not hmac.compare_digest(entry.hash, self._digest(previous, entry.body())):
            return "entry content does not match its hash"
        return None

    def _readable_entries(self) -> Iterator[AuditEntry | None]:
        """Every entry, oldest first; None for a row that does not decode."""
        for body, digest in self._rows():
            try:
                yield _entry(body, digest)
            except (ValueError, KeyError, TypeError):
                yield None

    def _rows(self) -> list[tuple[bytes, str]]:
        with self._lock:
            self._check_readable()
            if self._db is None:
                return [(entry.body(), entry.hash) for entry in self._entries]
            return self._db.execute("SELECT body, hash FROM audit_log ORDER BY sequence").fetchall()

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called: nothing more can be recorded."""
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            where = "" if self._path is None else f" {self._path!r}"
            raise ClosedError(f"the audit log{where} is closed: nothing more can be recorded")

    def _check_readable(self) -> None:
        if self._closed and self._path is not None:
            raise ClosedError(f"the audit log {self._path!r} is closed")

    def close(self) -> None:
        """Stop recording and close the file (a memory log keeps its entries). Idempotent.

        Waits for a :meth:`record` running on another thread to finish first.
        """
        with self._lock:
            self._closed = True
            if self._db is not None:
                self._db.close()
                self._db = None

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> AuditLog:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._db is None:
            self.close()
        else:  # may wait for a record running on a worker thread
            await asyncio.to_thread(self.close)


SCHEMA = (
    "CREATE TABLE IF NOT EXISTS audit_log ("
    " sequence INTEGER PRIMARY KEY, body BLOB NOT NULL, hash TEXT NOT NULL)"
)


def _open_existing(path: str) -> sqlite3.Connection:
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
    except sqlite3.DatabaseError:  # not an SQLite file at all
        connection.close()
        raise not_a_log from None
    if not {"sequence", "body", "hash"} <= columns:
        connection.close()
        raise not_a_log
    return connection


def _anchor(expect_count: int | None, expect_head: str | None) -> str | None:
    """Check a recorded head; returns ``expect_head`` normalised (lower-case hex)."""
    if expect_count is not None and (expect_count.__class__ is not int or expect_count < 0):
        raise ConfigurationError(f"expect_count must be an int >= 0, got {expect_count!r}")
    if expect_head is None:
        return None
    head = expect_head.strip().lower() if isinstance(expect_head, str) else ""
    if len(head) != 64 or not all(char in "0123456789abcdef" for char in head):
        raise ConfigurationError(f"expect_head must be 64 hex digits, got {expect_head!r}")
    return head


def _against_anchor(
    checked: int,
    head: str,
    anchor_at: int | None,
    expect_count: int | None,
    expect_head: str | None,
) -> AuditVerification:
    """The result for an intact chain of ``checked`` entries, given the recorded head."""
    if expect_count is not None and checked < expect_count:
        missing = f"{expect_count - checked} of the {expect_count} expected entries are missing"
        return AuditVerification(False, checked, checked, missing, head)
    if expect_head is not None and anchor_at is None:
        return AuditVerification(
            False, checked, None, "the expected head hash is not in the log", head
        )
    if expect_head is not None and expect_count is not None and anchor_at != expect_count:
        where = f"the expected head hash is the head after {anchor_at} entries, not {expect_count}"
        return AuditVerification(False, checked, None, where, head)
    return AuditVerification(True, checked, head=head)


def _entry(body: bytes, digest: str) -> AuditEntry:
    raw = orjson.loads(body)
    return AuditEntry(
        raw["sequence"],
        datetime.fromisoformat(raw["at"]),
        raw["principal"],
        raw["action"],
        raw["target"],
        raw["outcome"],
        raw["details"],
        raw["previous_hash"],
        digest,
    )
