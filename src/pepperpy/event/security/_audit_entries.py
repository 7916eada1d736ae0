"""The entries of an audit log: their fields, the bytes a hash covers, a row decoded.

An entry is stored as the canonical JSON of its fields (:meth:`AuditEntry.body`) and
its hash; :func:`decode` reads such a row back, or says what an edit of the file broke
in it. :class:`AuditVerification` is what checking a chain of them found.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, TypeGuard

import orjson

from .._errors import SerializationError
from .._json import _refuse_non_finite

__all__ = [
    "GENESIS",
    "AuditEntry",
    "AuditFailure",
    "AuditVerification",
    "check_entry",
    "decode",
    "is_hash",
    "is_hex",
]

GENESIS = "0" * 64
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


def check_entry(
    action: object,
    target: object,
    principal: object,
    outcome: object,
    details: object,
) -> dict[str, Any] | None:
    """Refuse, before anything is written, an entry no reader could decode.

    Returns the details as the entry will hold them: a copy in plain JSON values (the
    same JSON text), independent of the caller's mapping, which may change afterwards.
    """
    for name, value in (("action", action), ("target", target), ("outcome", outcome)):
        if not isinstance(value, str):
            raise TypeError(f"audit {name} must be a str, got {type(value).__name__}")
    if principal is not None and not isinstance(principal, str):
        raise TypeError(f"audit principal must be a str or None, got {type(principal).__name__}")
    if details is not None and not isinstance(details, Mapping):
        raise TypeError(f"audit details must be a mapping, got {type(details).__name__}")
    if details:
        return _check_details(details)
    return None


def _check_details(details: Mapping[str, Any]) -> dict[str, Any]:
    """Refuse details the entry's JSON cannot hold as given: a value orjson cannot
    encode, or a NaN or infinity, which it would write as ``null`` (the entry recorded,
    and verified, would then hold something other than what was given).

    Checked here, on the caller's thread, so that :meth:`AuditLog.record_off_loop` refuses
    them at once too, instead of its writer thread logging the failure later.
    """
    try:
        encoded = orjson.dumps(dict(details))
    except TypeError as exc:  # orjson.JSONEncodeError
        raise SerializationError(f"audit details must be JSON-able: {exc}") from exc
    if encoded.find(b"null") >= 0:  # only then can a NaN or an infinity be in there
        try:
            _refuse_non_finite(dict(details))
        except SerializationError as exc:
            raise SerializationError(f"audit details: {exc}; nothing was recorded") from None
    copied: dict[str, Any] = orjson.loads(encoded)
    return copied


def is_hex(value: object, digits: int) -> TypeGuard[str]:
    """Whether ``value`` is a str of exactly ``digits`` lower-case hex digits."""
    return isinstance(value, str) and len(value) == digits and _HEX.issuperset(value)


def is_hash(value: object) -> TypeGuard[str]:
    """Whether ``value`` is a hash of the chain: 64 lower-case hex digits (SHA-256)."""
    return is_hex(value, 64)


def decode(body: object, digest: object) -> AuditEntry | str:
    """The entry a stored row holds, or what is wrong with the row (it was edited)."""
    if not is_hash(digest):
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
    if not is_hash(raw["previous_hash"]):
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
