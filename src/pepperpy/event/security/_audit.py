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

Several writers (threads, stores, processes) may share one log file: each
:meth:`AuditLog.record` reads the head and appends after it in one write transaction,
so they take turns and the chain stays one line.

A log file records, when it is created, whether its chain is HMAC-keyed, and for a keyed
one the key's fingerprint (an HMAC of a constant under the key, truncated: it says
nothing of the key that the entries' hashes do not already). So a writer with the wrong
key (or none) is refused before it breaks the chain, and :meth:`AuditLog.verify` tells
a missing or wrong key from tampering (:attr:`AuditVerification.kind`). The marker is
not trusted to pass anything: it only explains failures, the chain alone decides
whether the entries are intact.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import sqlite3
import threading
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, NamedTuple, TypeGuard

import orjson

from .._errors import ClosedError, ConfigurationError, SerializationError, StoreError
from .._sqlite import OneConnection, open_wal, track_forks
from .._text import shown

__all__ = ["AuditEntry", "AuditFailure", "AuditLog", "AuditVerification", "key_fingerprint"]

logger = logging.getLogger("pepperpy.event.security")

GENESIS = "0" * 64
#: seconds a record waits for another writer of the same file (as the SQLite store)
BUSY_TIMEOUT = 10.0
#: rows read from the file at a time by verify() and iter_entries(): memory stays bounded
READ_PAGE = 500
_HEX = frozenset("0123456789abcdef")
_FIELDS = frozenset(
    ("sequence", "at", "principal", "action", "target", "outcome", "details", "previous_hash")
)


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


#: what kind of failure :meth:`AuditLog.verify` found (see :class:`AuditVerification`)
AuditFailure = Literal[
    "tampered",
    "malformed",
    "damaged",
    "truncated",
    "head_mismatch",
    "missing_key",
    "wrong_key",
    "not_keyed",
]


@dataclass(frozen=True, slots=True)
class AuditVerification:
    """The result of :meth:`AuditLog.verify`.

    ``checked`` entries verified before the first bad one (all of them when ``ok``);
    ``head`` is the hash of the last verified entry (``GENESIS`` for none): with
    ``checked`` it is the anchor to record and pass back to a later ``verify``.

    ``kind`` says what failed (``None`` when ``ok``):

    * ``"tampered"``: an entry's content, hash, link or sequence is wrong (an entry was
      edited, inserted, removed or moved), or the file's key marker was changed;
    * ``"malformed"``: a row (or the key marker) no longer decodes: the file was edited;
    * ``"damaged"``: SQLite finds the file itself damaged;
    * ``"truncated"``: fewer entries than ``expect_count`` (the newest were removed);
    * ``"head_mismatch"``: ``expect_head`` is not the hash of entry ``expect_count - 1``;
    * ``"missing_key"``: the file records an HMAC-keyed chain and no key was given;
    * ``"wrong_key"``: the file records a keyed chain and the key given is another one
      (its fingerprint differs, and no entry verifies under it; when some entry does,
      the key is right and the failure is reported as ``"tampered"``, the marker
      having been changed as well);
    * ``"not_keyed"``: the file records an unkeyed chain and a key was given (the log
      was written without a key, or rewritten by someone who had none).

    The last three say nothing about the entries: verify again with the right key.
    """

    ok: bool
    checked: int
    first_bad_sequence: int | None = None
    reason: str | None = None
    head: str = GENESIS
    kind: AuditFailure | None = None


#: the constant a key's fingerprint is the HMAC of
_FINGERPRINT_MESSAGE = b"pepperpy-event audit log key fingerprint v1"
#: what an unkeyed log file records in place of a fingerprint
_UNKEYED = "none"


def key_fingerprint(key: bytes) -> str:
    """What a keyed log file records of its key: 16 hex digits, HMAC-SHA256 of a constant.

    An HMAC does not reveal its key; the fingerprint only lets one check a key given
    against the log's, which the entries' own HMACs allow already.
    """
    return hmac.new(key, _FINGERPRINT_MESSAGE, hashlib.sha256).hexdigest()[:16]


class AuditLog(OneConnection):
    """An append-only, hash-chained log of security-relevant actions.

    ``AuditLog()`` keeps entries in memory; ``AuditLog("path/audit.db")`` in an SQLite
    file (synchronous=FULL, so a recorded entry survives a crash), created if missing.
    ``key`` (bytes) turns the chain into an HMAC chain. Any number of writers, in this
    process or others, may record to one file; ``busy_timeout`` is how many seconds a
    record waits for the others before it fails with
    :class:`~pepperpy.event.StoreError` (as does any failure of the file). A file
    records when it is made whether its chain is keyed, with the key's
    :func:`key_fingerprint`: a writer under another key setting (no key for a keyed
    file, another key, a key for an unkeyed file) raises ``ConfigurationError``.

    ``read_only=True`` opens an existing log file to verify or show it and never writes
    to it: a missing file raises ``FileNotFoundError``, a file that is not an audit log
    ``ConfigurationError``, and :meth:`record` is refused.

    After :meth:`close` (or leaving a ``with``/``async with`` block) :meth:`record` and
    :meth:`arecord` raise :class:`~pepperpy.event.ClosedError`: an entry is never kept
    anywhere but where the log keeps them. A closed file log cannot be read either; a
    closed memory log can (its entries are all there is).
    """

    def __init__(
        self,
        path: str | None = None,
        *,
        key: bytes | None = None,
        read_only: bool = False,
        busy_timeout: float = BUSY_TIMEOUT,
    ) -> None:
        if key is not None and (not isinstance(key, bytes) or len(key) < 16):
            raise ConfigurationError("the audit key must be at least 16 bytes")
        if (
            isinstance(busy_timeout, bool)
            or not isinstance(busy_timeout, int | float)
            or not busy_timeout > 0
        ):
            raise ConfigurationError(f"busy_timeout must be seconds > 0, got {busy_timeout!r}")
        self._key = key
        self._path = path
        self._read_only = read_only
        self._busy_timeout = float(busy_timeout)
        self._entries: list[AuditEntry] = []
        #: held around every use of the file (and of the entries), and by fork()
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._closed = False
        #: entries queued by record_off_loop() for the writer thread, and its state
        self._queued: deque[_Queued] = deque()
        self._queue_lock = threading.Lock()
        self._queue_changed = threading.Condition(self._queue_lock)
        self._writer: threading.Thread | None = None
        self._closing = False  # close() began: nothing more is queued
        if path is None:
            if read_only:
                raise ConfigurationError("a read-only audit log needs the path of its file")
        track_forks(self)
        if path is not None:
            with self._lock:
                self._db = self._open(path)

    def _open(self, path: str) -> sqlite3.Connection:
        """A connection to the log file, checked against this log's key setting."""
        if self._read_only:
            return _open_existing(path)
        try:
            db = open_wal(path, timeout=self._busy_timeout)
        except sqlite3.Error as exc:
            raise StoreError(f"could not open the audit log {path!r}: {exc}") from exc
        try:
            self._check_marker(self._marked(db))
        except BaseException:
            db.close()
            raise
        return db

    def _file(self) -> sqlite3.Connection | None:
        """The file's connection (None for a memory log); call with the lock held.

        A child made by ``os.fork()`` abandoned the parent's connection and opens its
        own here, on first use.
        """
        if self._db is None and self._path is not None:
            self._db = self._open(self._path)
        return self._db

    def _fork_hold(self, held: list[threading.Lock]) -> None:
        super()._fork_hold(held)
        self._queue_lock.acquire()  # the child must not inherit it held
        held.append(self._queue_lock)

    def _fork_child(self) -> None:
        super()._fork_child()
        # the entries queued so far are the parent's, which its writer thread records
        self._queued = deque()
        self._queue_lock = threading.Lock()
        self._queue_changed = threading.Condition(self._queue_lock)
        self._writer = None

    def _own_marker(self) -> str:
        """What a log file made with this log's key records: its fingerprint, or ``none``."""
        return _UNKEYED if self._key is None else key_fingerprint(self._key)

    def _marked(self, db: sqlite3.Connection) -> str | None:
        """Create the tables if missing and return the file's key marker.

        A new file gets this log's marker. A file written before files had one (it has
        entries but no marker) gets it only if its first entry verifies under this
        log's key setting; otherwise it stays unmarked (``None``).
        """
        try:
            marker = _read_marker(db)
            if marker is not None:
                return marker
            db.execute("BEGIN IMMEDIATE")  # one writer at a time marks a new file
            try:
                db.execute(SCHEMA)
                db.execute(META_SCHEMA)
                marker = _read_marker(db)
                if marker is None:
                    first = db.execute(
                        "SELECT sequence, body, hash FROM audit_log ORDER BY sequence LIMIT 1"
                    ).fetchone()
                    if first is None or self._first_verifies(*first):
                        marker = self._own_marker()
                        db.execute(
                            "INSERT INTO audit_meta (name, value) VALUES (?, ?)",
                            (_MARKER, marker),
                        )
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise StoreError(f"could not open the audit log {self._path!r}: {exc}") from exc
        return marker

    def _first_verifies(self, sequence: Any, body: Any, digest: Any) -> bool:
        """Whether a stored first row is entry 0 of a chain under this log's key setting."""
        entry = _decode(body, digest)
        return (
            not isinstance(entry, str) and self._problem(sequence, body, entry, 0, GENESIS) is None
        )

    def _check_marker(self, marker: str | None) -> None:
        """Refuse to write to a log file under another key setting than its own.

        Entries recorded so would break its chain for every later reader.
        """
        problem = self._key_mismatch(marker)
        if problem is not None:
            raise ConfigurationError(f"the audit log {self._path!r} {problem[1]}")

    def _key_mismatch(self, marker: str | None) -> tuple[AuditFailure, str] | None:
        """What is wrong between the file's key marker and this log's key, if anything."""
        if marker is None or marker == self._own_marker():
            return None
        if marker == _UNKEYED:
            return "not_keyed", (
                "is not HMAC-keyed (it records so), but a key was given: open it without "
                "one; if it was written with this key, someone without it rewrote the log"
            )
        if not _is_fingerprint(marker):
            return "malformed", f"has a malformed key marker {marker!r} (the file was edited)"
        if self._key is None:
            return "missing_key", "is HMAC-keyed (it records so) and no key was given"
        return "wrong_key", (
            "is HMAC-keyed under another key than the one given "
            f"(key fingerprint {key_fingerprint(self._key)}, the log's {marker})"
        )

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
        """Append an entry (thread-safe; durable before it returns when file-backed).

        On a file, reading the head and appending after it is one write transaction,
        so writers sharing the file (other logs, other processes) take turns: none
        loses its entry or breaks the chain. A failure of the file raises
        :class:`~pepperpy.event.StoreError` naming the entry that was not recorded.
        """
        if self._read_only:
            raise ConfigurationError(f"the audit log {self._path!r} was opened read-only")
        _check_entry(action, target, principal, outcome, details)
        # what record_off_loop queued happened first: it goes into the chain first
        self._wait_for_queued()
        return self._record(action, target, principal, outcome, details, datetime.now(UTC))

    def _record(
        self,
        action: str,
        target: str,
        principal: str | None,
        outcome: str,
        details: Mapping[str, Any] | None,
        at: datetime,
    ) -> AuditEntry:
        with self._lock:
            self._check_open()
            db = self._file()
            if db is None:
                last = self._entries[-1] if self._entries else None
                head = (-1, GENESIS) if last is None else (last.sequence, last.hash)
                entry, _ = self._chain(head, action, target, principal, outcome, details, at)
                self._entries.append(entry)
                return entry
            return self._record_in_file(db, action, target, principal, outcome, details, at)

    def _record_in_file(
        self,
        db: sqlite3.Connection,
        action: str,
        target: str,
        principal: str | None,
        outcome: str,
        details: Mapping[str, Any] | None,
        at: datetime,
    ) -> AuditEntry:
        try:
            db.execute("BEGIN IMMEDIATE")  # the write lock first: no writer appends meanwhile
            try:
                row = db.execute(
                    "SELECT sequence, hash FROM audit_log ORDER BY sequence DESC LIMIT 1"
                ).fetchone()
                # a tampered head (not a hash) still links: verify() reports that row
                head = (-1, GENESIS) if row is None else (row[0], _text(row[1]))
                entry, body = self._chain(head, action, target, principal, outcome, details, at)
                db.execute(
                    "INSERT INTO audit_log (sequence, body, hash) VALUES (?, ?, ?)",
                    (entry.sequence, body, entry.hash),
                )
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        db.execute("ROLLBACK")
                raise
        except (sqlite3.Error, OverflowError) as exc:  # overflow: a forged huge sequence
            raise StoreError(
                f"could not record {shown(action)} {shown(target)} in the audit log "
                f"{self._path!r}: {exc}"
            ) from exc
        return entry

    def _chain(
        self,
        head: tuple[int, str],
        action: str,
        target: str,
        principal: str | None,
        outcome: str,
        details: Mapping[str, Any] | None,
        at: datetime,
    ) -> tuple[AuditEntry, bytes]:
        """The entry after ``head`` (its sequence and hash) and the bytes its hash covers."""
        sequence, previous = head[0] + 1, head[1]
        draft = AuditEntry(
            sequence,
            at,
            principal,
            action,
            target,
            outcome,
            dict(details or {}),
            previous,
        )
        try:
            body = draft.body()
        except TypeError as exc:  # orjson.JSONEncodeError
            raise SerializationError(f"audit details must be JSON-able: {exc}") from exc
        digest = self._digest(previous, body)
        entry = AuditEntry(
            sequence, draft.at, principal, action, target, outcome, draft.details, previous, digest
        )
        return entry, body

    async def arecord(self, action: str, target: str, **kwargs: Any) -> AuditEntry:
        """:meth:`record` without blocking the event loop on a file-backed log."""
        self._check_open()  # without the lock: a record waiting for the file holds it
        if self._path is None:
            return self.record(action, target, **kwargs)
        return await asyncio.to_thread(self.record, action, target, **kwargs)

    def record_off_loop(
        self,
        action: str,
        target: str,
        *,
        principal: str | None = None,
        outcome: str = "ok",
        details: Mapping[str, Any] | None = None,
    ) -> None:
        """Record from synchronous code without ever blocking a running event loop.

        For code that must answer at once and cannot ``await`` (a synchronous check
        raising ``AccessDenied`` on the loop): a memory log, or a caller with no event
        loop running in its thread, records at once, as :meth:`record`. A file log
        called on a running loop queues the entry for this log's writer thread and
        returns: the file may be locked by another writer for up to ``busy_timeout``.
        Queued entries keep their order; :meth:`verify`, :meth:`iter_entries`,
        :meth:`entries` and :meth:`close` wait for them first, so they are never lost
        by this log nor missing from what it reads. An entry the writer fails to
        record (the file failed) is logged as an error on ``pepperpy.event.security``.

        Refused at once, like :meth:`record`: an entry that is not well-formed, a
        read-only log, a closed one (``ClosedError``).
        """
        if self._read_only:
            raise ConfigurationError(f"the audit log {self._path!r} was opened read-only")
        _check_entry(action, target, principal, outcome, details)
        if self._path is None or not _on_a_running_loop():
            self.record(action, target, principal=principal, outcome=outcome, details=details)
            return
        with self._queue_changed:
            if self._closing:
                raise ClosedError(
                    f"the audit log {self._path!r} is closed: nothing more can be recorded"
                )
            queued = _Queued(action, target, principal, outcome, details, datetime.now(UTC))
            self._queued.append(queued)
            if self._writer is not None:
                return
            writer = threading.Thread(
                target=self._write_queued, name="pepperpy-audit-writer", daemon=False
            )
            try:
                writer.start()
            except BaseException:  # no thread to be had: nothing may wait for one
                self._queued.pop()
                started = False
            else:
                self._writer = writer
                started = True
        if not started:  # the earlier entries are written (no writer), so this one goes next
            self._record(action, target, principal, outcome, details, queued.at)

    def _write_queued(self) -> None:
        """The writer thread: record queued entries in order, then end."""
        while True:
            with self._queue_changed:
                if not self._queued:
                    self._writer = None
                    self._queue_changed.notify_all()
                    return
                queued = self._queued[0]
            try:
                self._record(
                    queued.action,
                    queued.target,
                    queued.principal,
                    queued.outcome,
                    queued.details,
                    queued.at,
                )
            except Exception:
                logger.exception(
                    "could not record %s %r (%s, principal %r) in the audit log %r",
                    queued.action,
                    queued.target,
                    queued.outcome,
                    queued.principal,
                    self._path,
                )
            with self._queue_changed:
                self._queued.popleft()
                self._queue_changed.notify_all()

    def _wait_for_queued(self) -> None:
        """Wait until the entries queued by :meth:`record_off_loop` are written."""
        with self._queue_changed:
            if self._writer is threading.current_thread():
                return
            while self._queued or self._writer is not None:
                self._queue_changed.wait()

    def entries(self) -> list[AuditEntry]:
        """Every entry, oldest first (a list: for a large log, use :meth:`iter_entries`).

        An entry that does not decode (the file was edited) raises
        :class:`~pepperpy.event.StoreError` naming it; :meth:`verify` reports it instead.
        """
        return list(self.iter_entries())

    def iter_entries(self) -> Iterator[AuditEntry]:
        """Every entry, oldest first, read a page at a time: memory stays bounded.

        The entries come from one snapshot of the file (one read transaction, on a
        connection of its own, so writers go on meanwhile): entries recorded after the
        iteration began are not included. An entry that does not decode raises
        :class:`~pepperpy.event.StoreError` naming it, as in :meth:`entries`.
        """
        try:
            with self._snapshot() as (_, rows):
                for sequence, body, digest in rows:
                    entry = _decode(body, digest)
                    if isinstance(entry, str):
                        raise StoreError(
                            f"entry {sequence} of the audit log {self._path!r} is malformed: "
                            f"{entry} (the log was tampered with; verify() reports it)"
                        )
                    yield entry
        except sqlite3.Error as exc:
            raise StoreError(f"could not read the audit log {self._path!r}: {exc}") from exc

    def verify(
        self, *, expect_count: int | None = None, expect_head: str | None = None
    ) -> AuditVerification:
        """Recompute the chain; report the first entry whose hash or link is wrong.

        The chain alone cannot show that its newest entries were removed. Pass the head
        recorded from an earlier ``verify`` (``checked`` as ``expect_count``, ``head``
        as ``expect_head``) to also fail when the log has fewer entries than then, or
        when the entry that was the head is gone or different. Entries appended since
        are fine: the log may only grow past its anchor.

        An edited row that no longer decodes (a hash that is not 64 hex digits, a
        body that is not the JSON of an entry) is reported like any other tampering,
        with ``ok=False``; so is a file SQLite reports as damaged.
        """
        expect_head = _anchor(expect_count, expect_head)
        keyed: int | None = None  # a later entry that verifies under the key given
        try:
            with self._snapshot() as (marker, rows):
                mismatch = self._key_mismatch(marker)
                if mismatch is not None and mismatch[0] != "wrong_key":
                    reason = f"the log {mismatch[1]}"
                    return AuditVerification(False, 0, None, reason, kind=mismatch[0])
                result = self._verify_chain(
                    rows, expect_count, expect_head, unmarked=marker is None
                )
                if mismatch is not None and result.checked == 0 and not result.ok:
                    # the first entry fails: is the key wrong, or were the entry and the
                    # marker both changed? A later entry that verifies says the latter.
                    keyed = self._first_verifying(rows)
        except sqlite3.OperationalError as exc:  # locked, I/O: no verdict either way
            raise StoreError(f"could not read the audit log {self._path!r}: {exc}") from exc
        except sqlite3.DatabaseError as exc:  # SQLite finds the file itself damaged
            return AuditVerification(False, 0, None, f"the file is damaged: {exc}", kind="damaged")
        if mismatch is None:
            return result
        if result.checked == 0 and (result.ok or keyed is None):
            # nothing verifies under the key given either
            return AuditVerification(False, 0, None, f"the log {mismatch[1]}", kind="wrong_key")
        if result.checked == 0:  # the key is right: entries were changed, and the marker
            altered = (
                f"{result.reason}; the file's key marker was altered too (entry {keyed} "
                "verifies under the key given, so the key is the log's)"
            )
            return AuditVerification(
                False, 0, result.first_bad_sequence, altered, result.head, kind=result.kind
            )
        # entries verify under the key given: the marker, not the key, is wrong
        altered = "its key marker was altered (entries verify under the key given)"
        return AuditVerification(False, 0, None, altered, kind="tampered")

    def _verify_chain(
        self,
        rows: Iterable[tuple[int, Any, Any]],
        expect_count: int | None,
        expect_head: str | None,
        *,
        unmarked: bool,
    ) -> AuditVerification:
        anchor_at = 0 if expect_head == GENESIS else None  # entries up to the expected head
        previous = GENESIS
        checked = 0
        for expected_sequence, (stored_at, body, digest) in enumerate(rows):
            entry = _decode(body, digest)
            if isinstance(entry, str):
                malformed = f"malformed row: {entry}"
                return AuditVerification(
                    False, checked, stored_at, malformed, previous, kind="malformed"
                )
            problem = self._problem(stored_at, body, entry, expected_sequence, previous)
            if problem is not None:
                if checked == 0 and unmarked and self._path is not None:
                    problem += (
                        " (this file does not record whether it is HMAC-keyed: a missing "
                        "or wrong key looks the same)"
                    )
                return AuditVerification(
                    False, checked, entry.sequence, problem, previous, kind="tampered"
                )
            previous = entry.hash
            checked += 1
            if entry.hash == expect_head:
                anchor_at = checked
        return _against_anchor(checked, previous, anchor_at, expect_count, expect_head)

    def _problem(
        self, stored_at: int, body: bytes, entry: AuditEntry, expected_sequence: int, previous: str
    ) -> str | None:
        if entry.sequence != expected_sequence:
            return f"entry {expected_sequence} is missing"
        if stored_at != entry.sequence:
            return f"entry is stored under sequence {stored_at}"
        if entry.previous_hash != previous:
            return "link to the previous entry is broken"
        # the stored bytes, not a re-encoding: a key added to a body changes its hash
        if not hmac.compare_digest(entry.hash, self._digest(previous, body)):
            return "entry content does not match its hash"
        return None

    def _first_verifying(self, rows: Iterable[tuple[int, Any, Any]]) -> int | None:
        """The sequence of the first of ``rows`` whose hash is right under this log's key
        for its own body and link, or None: whether the key is the one they were
        written with, whatever happened to the entries before them."""
        for stored_at, body, digest in rows:
            entry = _decode(body, digest)
            if isinstance(entry, str):
                continue
            if hmac.compare_digest(entry.hash, self._digest(entry.previous_hash, body)):
                return stored_at
        return None

    @contextlib.contextmanager
    def _snapshot(self) -> Iterator[tuple[str | None, Iterator[tuple[int, Any, Any]]]]:
        """The file's key marker (``None``: it has none) and its rows as stored, oldest
        first, ``(sequence, body, hash)``, not yet checked: one snapshot, read a page at
        a time.

        A file log is read in one read transaction on a connection of its own (closed on
        leaving), so the rows and the marker agree, memory holds one page, and this
        log's writers are not held up meanwhile. A memory log gives its entries as they
        are on entering.
        """
        self._wait_for_queued()  # what this log recorded off the loop is part of it
        with self._lock:
            self._check_readable()
            if self._path is None:
                entries = list(self._entries)
        if self._path is None:
            yield None, ((entry.sequence, entry.body(), entry.hash) for entry in entries)
            return
        db = self._reader()
        try:
            db.execute("BEGIN")  # one snapshot: the marker with the rows
            marker = _read_marker(db)
            cursor = db.execute("SELECT sequence, body, hash FROM audit_log ORDER BY sequence")
            yield marker, _paged(cursor)
        finally:
            with contextlib.suppress(sqlite3.Error):
                if db.in_transaction:
                    db.execute("ROLLBACK")  # it only read
            db.close()

    def _reader(self) -> sqlite3.Connection:
        """A new connection that only reads the log file (see :meth:`_snapshot`)."""
        assert self._path is not None
        mode = "ro" if self._read_only else "rw"  # never creates a file that went missing
        uri = f"{Path(self._path).absolute().as_uri()}?mode={mode}"
        return sqlite3.connect(uri, uri=True, isolation_level=None, timeout=self._busy_timeout)

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

        Waits for a :meth:`record` running on another thread, and for the entries
        queued by :meth:`record_off_loop`, to be written first.
        """
        with self._queue_changed:
            self._closing = True
        self._wait_for_queued()
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
        if self._path is None:
            self.close()
        else:  # may wait for a record running on a worker thread
            await asyncio.to_thread(self.close)


class _Queued(NamedTuple):
    """An entry :meth:`AuditLog.record_off_loop` left for the writer thread."""

    action: str
    target: str
    principal: str | None
    outcome: str
    details: Mapping[str, Any] | None
    #: when it was asked for: the entry's time, whenever the writer gets to it
    at: datetime


def _on_a_running_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


SCHEMA = (
    "CREATE TABLE IF NOT EXISTS audit_log ("
    " sequence INTEGER PRIMARY KEY, body BLOB NOT NULL, hash TEXT NOT NULL)"
)
#: facts about the log file, written once when it is created: its key marker
META_SCHEMA = "CREATE TABLE IF NOT EXISTS audit_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)"
#: the name of the key marker in ``audit_meta``: ``none``, or the key's fingerprint
_MARKER = "hmac_key"


def _read_marker(db: sqlite3.Connection) -> str | None:
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


def _paged(cursor: sqlite3.Cursor) -> Iterator[tuple[int, Any, Any]]:
    """The rows of ``cursor``, fetched :data:`READ_PAGE` at a time."""
    while True:
        page = cursor.fetchmany(READ_PAGE)
        if not page:
            return
        yield from page


def _is_fingerprint(value: str) -> bool:
    return len(value) == 16 and _HEX.issuperset(value)


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
        return AuditVerification(False, checked, checked, missing, head, kind="truncated")
    if expect_head is not None and anchor_at is None:
        gone = "the expected head hash is not in the log"
        return AuditVerification(False, checked, None, gone, head, kind="head_mismatch")
    if expect_head is not None and expect_count is not None and anchor_at != expect_count:
        where = f"the expected head hash is the head after {anchor_at} entries, not {expect_count}"
        return AuditVerification(False, checked, None, where, head, kind="head_mismatch")
    return AuditVerification(True, checked, head=head)


def _check_entry(
    action: object,
    target: object,
    principal: object,
    outcome: object,
    details: object,
) -> None:
    """Refuse, before anything is written, an entry no reader could decode."""
    for name, value in (("action", action), ("target", target), ("outcome", outcome)):
        if not isinstance(value, str):
            raise TypeError(f"audit {name} must be a str, got {type(value).__name__}")
    if principal is not None and not isinstance(principal, str):
        raise TypeError(f"audit principal must be a str or None, got {type(principal).__name__}")
    if details is not None and not isinstance(details, Mapping):
        raise TypeError(f"audit details must be a mapping, got {type(details).__name__}")


def _text(value: object) -> str:
    """A stored hash as text, whatever an edit of the file put there."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return repr(value)


def _is_hash(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and len(value) == 64 and _HEX.issuperset(value)


def _decode(body: object, digest: object) -> AuditEntry | str:
    """The entry a stored row holds, or what is wrong with the row (it was edited)."""
    if not _is_hash(digest):
        return "its hash is not 64 lower-case hex digits"
    if not isinstance(body, bytes):
        return f"its body is stored as {type(body).__name__}, not as the JSON bytes of an entry"
    try:
        raw = orjson.loads(body)
    except orjson.JSONDecodeError:
        return "its body is not JSON"
    if not isinstance(raw, dict) or raw.keys() != _FIELDS:
        return "its body does not have exactly the fields of an entry"
    sequence, at, principal = raw["sequence"], raw["at"], raw["principal"]
    if sequence.__class__ is not int or sequence < 0:
        return "its sequence is not an int >= 0"
    if not isinstance(at, str):
        return "its time is not text"
    try:
        when = datetime.fromisoformat(at)
    except ValueError:
        return "its time is not an ISO 8601 timestamp"
    if principal is not None and not isinstance(principal, str):
        return "its principal is not text"
    if not all(isinstance(raw[name], str) for name in ("action", "target", "outcome")):
        return "its action, target or outcome is not text"
    if not isinstance(raw["details"], dict):
        return "its details are not a JSON object"
    if not _is_hash(raw["previous_hash"]):
        return "its link to the previous entry is not 64 lower-case hex digits"
    return AuditEntry(
        sequence,
        when,
        principal,
        raw["action"],
        raw["target"],
        raw["outcome"],
        raw["details"],
        raw["previous_hash"],
        digest,
    )
