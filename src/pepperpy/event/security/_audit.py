"""A tamper-evident audit log: every entry carries the hash of the one before it.

Each entry's hash is ``SHA-256(previous hash || canonical JSON of the entry)``, or an
HMAC-SHA256 with a secret key when one is given, so changing, removing or reordering an
entry breaks every later hash and :meth:`AuditLog.verify` finds the first bad entry.
With a key, someone who can write the log but does not hold the key cannot recompute a
consistent chain either.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import sqlite3
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from .._errors import ConfigurationError
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
    """The result of :meth:`AuditLog.verify`."""

    ok: bool
    checked: int
    first_bad_sequence: int | None = None
    reason: str | None = None


class AuditLog:
    """An append-only, hash-chained log of security-relevant actions.

    ``AuditLog()`` keeps entries in memory; ``AuditLog("path/audit.db")`` in an SQLite
    file (synchronous=FULL, so a recorded entry survives a crash). ``key`` (bytes)
    turns the chain into an HMAC chain.
    """

    def __init__(self, path: str | None = None, *, key: bytes | None = None) -> None:
        if key is not None and (not isinstance(key, bytes) or len(key) < 16):
            raise ConfigurationError("the audit key must be at least 16 bytes")
        self._key = key
        self._path = path
        self._entries: list[AuditEntry] = []
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        if path is not None:
            self._db = open_wal(
                path,
                schema="CREATE TABLE IF NOT EXISTS audit_log ("
                " sequence INTEGER PRIMARY KEY, body BLOB NOT NULL, hash TEXT NOT NULL)",
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
        """Append an entry (thread-safe; durable before it returns when file-backed)."""
        with self._lock:
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
            if self._db is None:
                return list(self._entries)
            rows = self._db.execute("SELECT body, hash FROM audit_log ORDER BY sequence")
            return [_entry(body, digest) for body, digest in rows]

    def verify(self) -> AuditVerification:
        """Recompute the chain; report the first entry whose hash or link is wrong."""
        previous = GENESIS
        checked = 0
        for expected_sequence, entry in enumerate(self.entries()):
            if entry.sequence != expected_sequence:
                return AuditVerification(
                    False, checked, entry.sequence, f"entry {expected_sequence} is missing"
                )
            if entry.previous_hash != previous:
                return AuditVerification(
                    False, checked, entry.sequence, "link to the previous entry is broken"
                )
            if not hmac.compare_digest(entry.hash, self._digest(previous, entry.body())):
                return AuditVerification(
                    False, checked, entry.sequence, "entry content does not match its hash"
                )
            previous = entry.hash
            checked += 1
        return AuditVerification(True, checked)

    def close(self) -> None:
        """Close the file (a memory log keeps its entries)."""
        if self._db is not None:
            self._db.close()
            self._db = None


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
