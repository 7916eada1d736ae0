"""What verify() says of entries swapped or copied within an audit log file.

Someone who can write the file swaps two entries, or copies one over the next (rows and
hashes as stored, so each row still verifies by itself). Before, verify() reported the
entry whose place now holds another as missing ("entry 1 is missing") and named the
entry found there as the first bad one: false on both counts, the entry is still in the
file (swapped) and the first bad row is the one in its place.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from pepperpy.event.security import AuditLog, AuditVerification

KEY = b"k" * 32


def make_log(path: Path, key: bytes | None, entries: int = 4) -> None:
    with AuditLog(str(path), key=key) as log:
        for n in range(entries):
            log.record("append", f"orders.{n}", principal="svc")


def put(path: Path, sequence: int, source: int) -> None:
    """Store, as entry ``sequence``, the row of entry ``source`` (body and hash)."""
    with closing(sqlite3.connect(path)) as db, db:
        body, digest = db.execute(
            "SELECT body, hash FROM audit_log WHERE sequence = ?", (source,)
        ).fetchone()
        db.execute(
            "UPDATE audit_log SET body = ?, hash = ? WHERE sequence = ?", (body, digest, sequence)
        )


def verify(path: Path, key: bytes | None) -> AuditVerification:
    with AuditLog(str(path), key=key, read_only=True) as log:
        return log.verify()


@pytest.mark.parametrize("key", [None, KEY], ids=["sha256", "hmac"])
def test_two_swapped_entries_are_reported_as_swapped_not_missing(
    tmp_path: Path, key: bytes | None
) -> None:
    path = tmp_path / "audit.db"
    make_log(path, key)
    with closing(sqlite3.connect(path)) as db:
        rows = db.execute("SELECT sequence, body, hash FROM audit_log").fetchall()
    with closing(sqlite3.connect(path)) as db, db:
        for sequence, other in ((1, 2), (2, 1)):
            db.execute(
                "UPDATE audit_log SET body = ?, hash = ? WHERE sequence = ?",
                (rows[other][1], rows[other][2], sequence),
            )
    result = verify(path, key)
    assert (result.ok, result.kind, result.checked) == (False, "tampered", 1)
    assert result.first_bad_sequence == 1
    assert result.reason == (
        "the row stored as entry 1 is entry 2 (entries were swapped, moved or copied)"
    )


def test_an_entry_copied_over_the_next_is_reported_as_a_copy(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    make_log(path, KEY)
    put(path, 3, 2)  # entry 3 is gone, entry 2 is there twice
    result = verify(path, KEY)
    assert (result.ok, result.kind, result.checked, result.first_bad_sequence) == (
        False,
        "tampered",
        3,
        3,
    )
    assert result.reason == (
        "the row stored as entry 3 is entry 2 (entries were swapped, moved or copied)"
    )


def test_audit_verify_names_the_row_in_the_wrong_place(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pepperpy.event.cli import main

    path = tmp_path / "audit.db"
    make_log(path, None)
    put(path, 1, 2)
    with pytest.raises(SystemExit) as exit_status:
        main(["audit", "verify", str(path)])
    assert exit_status.value.code == 1
    err = capsys.readouterr().err
    assert "NOT intact: entry 1: the row stored as entry 1 is entry 2" in err
    assert "missing" not in err


@pytest.mark.parametrize(
    ("edit", "first_bad", "reason"),
    [
        ("DELETE FROM audit_log WHERE sequence = 1", 2, "entry 1 is missing"),
        (
            "UPDATE audit_log SET sequence = 12 WHERE sequence = 3",
            3,
            "entry is stored under sequence 12",
        ),
    ],
    ids=["deleted", "moved-to-a-gap"],
)
def test_deleted_and_renumbered_entries_are_reported_as_before(
    tmp_path: Path, edit: str, first_bad: int, reason: str
) -> None:
    path = tmp_path / "audit.db"
    make_log(path, KEY)
    with closing(sqlite3.connect(path)) as db, db:
        db.execute(edit)
    result = verify(path, KEY)
    assert (result.ok, result.kind, result.first_bad_sequence, result.reason) == (
        False,
        "tampered",
        first_bad,
        reason,
    )
