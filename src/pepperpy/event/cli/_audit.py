"""``pepperpy-event audit``: verify and print a hash-chained audit log file."""

from __future__ import annotations

import os
import pathlib
from typing import Any

import click

from ._errors import CommandError
from ._output import field
from ._shell import POSITION, emit

__all__ = ["audit"]


@click.group()
def audit() -> None:
    """Inspect a hash-chained audit log file (see pepperpy.event.security.AuditLog)."""


def _audit_key() -> bytes | None:
    """The audit log's HMAC key, from PEPPERPY_EVENT_AUDIT_KEY (hex), if it is set."""
    from .._errors import ConfigurationError
    from ..security._audit import _check_key

    key_hex = os.environ.get("PEPPERPY_EVENT_AUDIT_KEY")
    try:
        key = bytes.fromhex(key_hex) if key_hex else None
    except ValueError:
        raise CommandError("PEPPERPY_EVENT_AUDIT_KEY must be hex") from None
    try:
        _check_key(key)
    except ConfigurationError as exc:  # named the key, not where it came from
        raise CommandError(f"PEPPERPY_EVENT_AUDIT_KEY: {exc} (2 hex digits a byte)") from None
    return key


def _entries(count: int) -> str:
    return f"{count} {'entry' if count == 1 else 'entries'}"


def _open_audit(path: str, key: bytes | None) -> Any:
    """The audit log file at ``path``, opened read-only (nothing here writes to it)."""
    from ..security import AuditLog

    if not pathlib.Path(path).is_file():
        raise CommandError(f"no audit log at {path!r}")
    return AuditLog(path, key=key, read_only=True)


def _verify_audit(path: str, key: bytes | None, **expected: Any) -> Any:
    log = _open_audit(path, key)
    try:
        return log.verify(**expected)
    finally:
        log.close()


#: what ``audit verify`` says when the key setting, not the log, is what fails
_KEY_PROBLEMS = {
    "missing_key": "is HMAC-keyed: put its key (hex) in PEPPERPY_EVENT_AUDIT_KEY, which is not set",
    "wrong_key": "is HMAC-keyed under another key than the one in PEPPERPY_EVENT_AUDIT_KEY "
    "(their fingerprints differ): set the log's key",
    "not_keyed": "is not HMAC-keyed, but PEPPERPY_EVENT_AUDIT_KEY is set: unset it to verify "
    "the log; if the log was written with that key, someone without the key rewrote it",
}


@audit.command("verify")
@click.argument("path")
@click.option(
    "--expect-count",
    type=POSITION,
    metavar="N",
    help="Fail unless the log still has at least the N entries of a recorded head.",
)
@click.option(
    "--expect-head",
    metavar="HASH",
    help="Fail unless the entry with this hash (a recorded head) is still in the chain.",
)
def audit_verify(path: str, expect_count: int | None, expect_head: str | None) -> None:
    """Recompute the chain of PATH; exit 1 naming the first bad entry if it was altered.

    Prints the head (entry count and last hash). The chain cannot show that its newest
    entries were removed: record the head somewhere else and pass it back later with
    --expect-count and --expect-head. An HMAC-keyed log needs its key, hex-encoded, in
    PEPPERPY_EVENT_AUDIT_KEY; a missing or wrong key is named as such (the log file
    records whether it is keyed, and the key's fingerprint).
    """
    from ..security._audit_entries import is_hash

    if expect_head is not None and not is_hash(expect_head.strip().lower()):
        raise CommandError(
            f"--expect-head must be 64 hex digits (the HASH of a head line), got {expect_head!r}"
        )
    key = _audit_key()
    result = _verify_audit(path, key, expect_count=expect_count, expect_head=expect_head)
    if not result.ok:
        if result.kind in _KEY_PROBLEMS:  # the log records its key setting (AuditLog)
            problem = _KEY_PROBLEMS[result.kind]
            if result.kind == "missing_key" and "PEPPERPY_EVENT_AUDIT_KEY" in os.environ:
                # set, but empty: a CI secret or a deployment variable that expanded
                # to nothing, where "not set" sent the reader to look for the wrong fault
                problem = problem.replace(
                    "which is not set", "which is not set (it holds an empty string)"
                )
            raise CommandError(f"audit log {path!r} {problem}")
        bad = result.first_bad_sequence
        where = "" if bad is None else f"entry {bad}: "
        verified = "verified" if bad is None else "before it verified"
        raise CommandError(
            f"audit log {path!r} is NOT intact: {where}{result.reason} "
            f"({_entries(result.checked)} {verified})"
        )
    emit(f"audit log {path!r} is intact: {_entries(result.checked)} verified")
    emit(f"head {result.checked} {result.head}")


@audit.command("show")
@click.argument("path")
def audit_show(path: str) -> None:
    """Print every entry of PATH: SEQUENCE TIME PRINCIPAL ACTION TARGET OUTCOME.

    One line per entry: a field holding a space, a quote or a control character is
    printed as a JSON string, so no value can pass for another line or field. Entries
    are read a page at a time: printing starts at once, whatever the log's size.
    """
    log = _open_audit(path, _audit_key())
    try:
        for entry in log.iter_entries():
            emit(
                f"{entry.sequence} {entry.at.isoformat()} {field(entry.principal)} "
                f"{field(entry.action)} {field(entry.target)} {field(entry.outcome)}"
            )
    finally:
        log.close()
