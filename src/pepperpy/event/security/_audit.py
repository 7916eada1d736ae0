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

Beside this module: the entries and their stored form (``_audit_entries``), the chain's
hashes, key marker and verification (``_audit_chain``), the SQLite file
(``_audit_file``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import threading
from collections import deque
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, NamedTuple

from .._errors import ClosedError, ConfigurationError, StoreError
from .._sqlite import OneConnection, check_busy_timeout, open_wal, track_forks
from ..store._sqlite_causes import named_error
from ._audit_chain import Chain, anchor
from ._audit_entries import (
    GENESIS,
    AuditEntry,
    AuditFailure,
    AuditVerification,
    check_entry,
    decode,
)
from ._audit_file import (
    append,
    check_not_foreign,
    mark,
    open_existing,
    opening_error,
    snapshot,
)

__all__ = ["AuditEntry", "AuditFailure", "AuditLog", "AuditVerification"]

logger = logging.getLogger("pepperpy.event.security")

#: seconds a record waits for another writer of the same file (as the SQLite store)
BUSY_TIMEOUT = 10.0


class AuditLog(OneConnection):
    """An append-only, hash-chained log of security-relevant actions.

    ``AuditLog()`` keeps entries in memory; ``AuditLog("path/audit.db")`` in an SQLite
    file (synchronous=FULL, so a recorded entry survives a crash), created if missing;
    a database holding other tables (the event store's file given by mistake) raises
    ``ConfigurationError`` and is left as it is.
    ``key`` (bytes) turns the chain into an HMAC chain. Any number of writers, in this
    process or others, may record to one file; ``busy_timeout`` is how many seconds a
    record waits for the others before it fails with
    :class:`~pepperpy.event.StoreError` (as does any failure of the file). A file
    records when it is made whether its chain is keyed, with the key's
    :func:`key_fingerprint`: a writer under another key setting (no key for a keyed
    file, another key, a key for an unkeyed file) raises ``ConfigurationError``.

    ``read_only=True`` opens an existing log file to verify or show it and never writes
    to it: a missing file raises ``FileNotFoundError``, a file that is not an audit log
    ``ConfigurationError``, and :meth:`record` is refused. It also reads a log in a
    directory SQLite cannot write (a read-only mount, an immutable directory, no
    permission), where the ``-wal`` and ``-shm`` files WAL mode needs cannot be made: a
    log there with no ``-wal`` holding entries is read as immutable (nothing can be
    writing it), and a read that finds it changed meanwhile raises ``StoreError``.

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
        _check_key(key)
        # > 0 (an audit write never fails at once on a lock), and below SQLite's bound
        busy_timeout = check_busy_timeout(
            busy_timeout, "busy_timeout", ConfigurationError, zero=False
        )
        self._chain = Chain(key)
        if path in ("", ":memory:"):
            # SQLite's names for a database private to one connection: the log's reads
            # (and a forked child's writer) open connections of their own, which found
            # no such file, so such a log recorded but could never be read or verified
            path = None
        #: absolute, fixed now: reads open connections of their own, and a forked child
        #: its writer's, which must not follow an ``os.chdir()``
        self._path = path if path is None else os.path.abspath(path)
        self._read_only = read_only
        #: read-only, in a directory SQLite cannot make the -wal and -shm in: read as a
        #: file nothing writes (see _audit_file.open_existing)
        self._immutable = False
        self._busy_timeout = busy_timeout
        #: a memory log's entries as a file stores them: (sequence, body, hash), the body
        #: the bytes the hash covers, so no object a caller holds can change them
        self._entries: list[tuple[int, bytes, str]] = []
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
            db, self._immutable = open_existing(path)
            return db
        check_not_foreign(path)
        try:
            db = open_wal(path, timeout=self._busy_timeout)
        except sqlite3.Error as exc:
            raise opening_error(exc, path) from exc
        try:
            self._check_marker(mark(db, path, self._chain))
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

    def _check_marker(self, marker: str | None) -> None:
        """Refuse to write to a log file under another key setting than its own.

        Entries recorded so would break its chain for every later reader.
        """
        problem = self._chain.key_mismatch(marker)
        if problem is not None:
            raise ConfigurationError(f"the audit log {self._path!r} {problem[1]}")

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
        self._check_recordable(action, target, principal, outcome, details)
        # what record_off_loop queued happened first: it goes into the chain first
        self._wait_for_queued()
        return self._record(action, target, principal, outcome, details, datetime.now(UTC))

    def _check_recordable(
        self,
        action: str,
        target: str,
        principal: str | None,
        outcome: str,
        details: Mapping[str, Any] | None,
    ) -> dict[str, Any] | None:
        """Refuse at once what no record can write: any entry to a log opened read-only,
        an entry that is not well-formed. Returns a copy of ``details`` in plain JSON."""
        if self._read_only:
            raise ConfigurationError(f"the audit log {self._path!r} was opened read-only")
        return check_entry(action, target, principal, outcome, details)

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
                head = (-1, GENESIS) if last is None else (last[0], last[2])
                entry, body = self._chain.entry_after(
                    head, action, target, principal, outcome, details, at
                )
                self._entries.append((entry.sequence, body, entry.hash))
                return entry
            return append(
                db, self._path, self._chain, action, target, principal, outcome, details, at
            )

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
        copied = self._check_recordable(action, target, principal, outcome, details)
        if self._path is None or not _on_a_running_loop():
            self.record(action, target, principal=principal, outcome=outcome, details=details)
            return
        with self._queue_changed:
            if self._closing:
                raise ClosedError(
                    f"the audit log {self._path!r} is closed: nothing more can be recorded"
                )
            # the copy, not the caller's mapping: changing it after this call returned
            # must not change the entry the writer records later
            queued = _Queued(action, target, principal, outcome, copied, datetime.now(UTC))
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
                    entry = decode(body, digest)
                    if isinstance(entry, str):
                        raise StoreError(
                            f"entry {sequence} of the audit log {self._path!r} is malformed: "
                            f"{entry} (the log was tampered with; verify() reports it)"
                        )
                    yield entry
        except sqlite3.Error as exc:
            raise self._reading_error(exc) from exc

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
        expect_head = anchor(expect_count, expect_head)
        keyed: int | None = None  # a later entry that verifies under the key given
        try:
            with self._snapshot() as (marker, rows):
                mismatch = self._chain.key_mismatch(marker)
                if mismatch is not None and mismatch[0] != "wrong_key":
                    reason = f"the log {mismatch[1]}"
                    return AuditVerification(False, 0, None, reason, kind=mismatch[0])
                unmarked = marker is None and self._path is not None
                result = self._chain.verify(rows, expect_count, expect_head, unmarked=unmarked)
                if mismatch is not None and result.checked == 0 and not result.ok:
                    # the first entry fails: is the key wrong, or were the entry and the
                    # marker both changed? A later entry that verifies says the latter.
                    keyed = self._chain.first_verifying(rows)
        except sqlite3.OperationalError as exc:  # locked, I/O: no verdict either way
            raise self._reading_error(exc) from exc
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
            yield None, iter(entries)
            return
        with snapshot(self._path, self._read_only, self._busy_timeout, self._immutable) as read:
            yield read

    def _reading_error(self, error: sqlite3.Error) -> BaseException:
        path = str(self._path)
        return named_error(error, path, head=f"could not read the audit log {path!r}")

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


def _check_key(key: object) -> None:
    """Refuse an HMAC key that is not bytes (a wrong type: ``TypeError``, saying how to
    make bytes of it), or is shorter than 16 bytes (``ConfigurationError``)."""
    if key is None:
        return
    if not isinstance(key, bytes):
        how = (
            "key.encode() for a passphrase, bytes.fromhex(key) for a hex key"
            if isinstance(key, str)
            else "bytes(key)"
            if isinstance(key, bytearray | memoryview)
            else "16 or more random bytes, os.urandom(32) say"
        )
        raise TypeError(f"the audit key must be bytes, got {type(key).__name__}: pass {how}")
    if len(key) < 16:
        raise ConfigurationError(f"the audit key must be at least 16 bytes, got {len(key)}")


def _on_a_running_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
