"""The chain of an audit log: each entry's hash covers the one before it, under a key.

Each entry's hash is ``SHA-256(previous hash || canonical JSON of the entry)``, or an
HMAC-SHA256 with the log's key. A log file records which, and the key's
:func:`key_fingerprint` (its key marker), so a wrong or missing key is told from
tampering (:meth:`Chain.key_mismatch`).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from .._errors import ConfigurationError, SerializationError
from ._audit_entries import (
    GENESIS,
    AuditEntry,
    AuditFailure,
    AuditVerification,
    decode,
    is_hash,
    is_hex,
)

__all__ = ["Chain", "anchor", "key_fingerprint"]

#: the constant a key's fingerprint is the HMAC of
_FINGERPRINT_MESSAGE = b"pepperpy-event audit log key fingerprint v1"
#: how many hex digits of that HMAC a fingerprint keeps
_FINGERPRINT_DIGITS = 16
#: what an unkeyed log file records in place of a fingerprint
_UNKEYED = "none"


def key_fingerprint(key: bytes) -> str:
    """What a keyed log file records of its key: 16 hex digits, HMAC-SHA256 of a constant.

    An HMAC does not reveal its key; the fingerprint only lets one check a key given
    against the log's, which the entries' own HMACs allow already.
    """
    return hmac.new(key, _FINGERPRINT_MESSAGE, hashlib.sha256).hexdigest()[:_FINGERPRINT_DIGITS]


class Chain:
    """The hashes of a log's chain: HMAC-SHA256 under ``key``, or SHA-256 without one.

    It makes the entry after a head, checks rows against each other and against a
    recorded head, and says whether a file's key marker fits ``key``.
    """

    __slots__ = ("_key",)

    def __init__(self, key: bytes | None) -> None:
        self._key = key

    def own_marker(self) -> str:
        """What a log file made with this log's key records: its fingerprint, or ``none``."""
        return _UNKEYED if self._key is None else key_fingerprint(self._key)

    def key_mismatch(self, marker: str | None) -> tuple[AuditFailure, str] | None:
        """What is wrong between the file's key marker and this log's key, if anything."""
        if marker is None or marker == self.own_marker():
            return None
        if marker == _UNKEYED:
            return "not_keyed", (
                "is not HMAC-keyed (it records so), but a key was given: open it without "
                "one; if it was written with this key, someone without it rewrote the log"
            )
        if not is_hex(marker, _FINGERPRINT_DIGITS):
            return "malformed", f"has a malformed key marker {marker!r} (the file was edited)"
        if self._key is None:
            return "missing_key", "is HMAC-keyed (it records so) and no key was given"
        return "wrong_key", (
            "is HMAC-keyed under another key than the one given "
            f"(key fingerprint {key_fingerprint(self._key)}, the log's {marker})"
        )

    def digest(self, previous: str, body: bytes) -> str:
        message = previous.encode() + body
        if self._key is not None:
            return hmac.new(self._key, message, hashlib.sha256).hexdigest()
        return hashlib.sha256(message).hexdigest()

    def entry_after(
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
        digest = self.digest(previous, body)
        entry = AuditEntry(
            sequence, draft.at, principal, action, target, outcome, draft.details, previous, digest
        )
        return entry, body

    def first_verifies(self, sequence: Any, body: Any, digest: Any) -> bool:
        """Whether a stored first row is entry 0 of a chain under this log's key setting."""
        entry = decode(body, digest)
        return (
            not isinstance(entry, str) and self.problem(sequence, body, entry, 0, GENESIS) is None
        )

    def verify(
        self,
        rows: Iterable[tuple[int, Any, Any]],
        expect_count: int | None,
        expect_head: str | None,
        *,
        unmarked: bool,
    ) -> AuditVerification:
        """Check ``rows`` (as stored, oldest first) link up from ``GENESIS``, then against
        the recorded head. ``unmarked``: they come from a file that does not record its
        key setting, so a first entry that fails may be a missing or wrong key."""
        anchor_at = 0 if expect_head == GENESIS else None  # entries up to the expected head
        previous = GENESIS
        checked = 0
        for expected_sequence, (stored_at, body, digest) in enumerate(rows):
            entry = decode(body, digest)
            if isinstance(entry, str):
                malformed = f"malformed row: {entry}"
                return AuditVerification(
                    False, checked, stored_at, malformed, previous, kind="malformed"
                )
            problem = self.problem(stored_at, body, entry, expected_sequence, previous)
            if problem is not None:
                if checked == 0 and unmarked:
                    problem += (
                        " (this file does not record whether it is HMAC-keyed: a missing "
                        "or wrong key looks the same)"
                    )
                # the first row that fails: the one in entry ``expected_sequence``'s
                # place, or the entry moved away from it (stored elsewhere, or the
                # first after a gap), as its own sequence says
                bad = stored_at if stored_at == expected_sequence else entry.sequence
                return AuditVerification(False, checked, bad, problem, previous, kind="tampered")
            previous = entry.hash
            checked += 1
            if entry.hash == expect_head:
                anchor_at = checked
        return _against_anchor(checked, previous, anchor_at, expect_count, expect_head)

    def problem(
        self, stored_at: int, body: bytes, entry: AuditEntry, expected_sequence: int, previous: str
    ) -> str | None:
        if entry.sequence != expected_sequence:
            if stored_at == expected_sequence:  # the row is there, holding another entry
                return (
                    f"the row stored as entry {stored_at} is entry {entry.sequence} "
                    "(entries were swapped, moved or copied)"
                )
            return f"entry {expected_sequence} is missing"
        if stored_at != entry.sequence:
            return f"entry is stored under sequence {stored_at}"
        if entry.previous_hash != previous:
            return "link to the previous entry is broken"
        # the stored bytes, not a re-encoding: a key added to a body changes its hash
        if not hmac.compare_digest(entry.hash, self.digest(previous, body)):
            return "entry content does not match its hash"
        return None

    def first_verifying(self, rows: Iterable[tuple[int, Any, Any]]) -> int | None:
        """The sequence of the first of ``rows`` whose hash is right under this log's key
        for its own body and link, or None: whether the key is the one they were
        written with, whatever happened to the entries before them."""
        for stored_at, body, digest in rows:
            entry = decode(body, digest)
            if isinstance(entry, str):
                continue
            if hmac.compare_digest(entry.hash, self.digest(entry.previous_hash, body)):
                return stored_at
        return None


def anchor(expect_count: int | None, expect_head: str | None) -> str | None:
    """Check a recorded head; returns ``expect_head`` normalised (lower-case hex)."""
    if expect_count is not None and (expect_count.__class__ is not int or expect_count < 0):
        message = f"expect_count must be an int >= 0, got {expect_count!r}"
        if expect_count.__class__ is not int:  # a bool, a str: a wrong type
            raise TypeError(message)
        raise ConfigurationError(message)
    if expect_head is None:
        return None
    head = expect_head.strip().lower() if isinstance(expect_head, str) else ""
    if not is_hash(head):
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
