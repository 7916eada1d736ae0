"""An audit log file records whether it is HMAC-keyed, so a key problem is not tampering.

Before, the file did not say: verifying a keyed log without its key (or with another
one) reported tampering at entry 0, and a writer opened with the wrong key appended
entries that broke the chain for every later reader.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import sqlite3
import threading
from contextlib import closing
from pathlib import Path

import pytest

from pepperpy.event import ConfigurationError
from pepperpy.event.security import AuditLog, AuditVerification
from pepperpy.event.security._audit_chain import key_fingerprint

KEY = b"k" * 32
OTHER = b"o" * 32


def make_log(path: Path, key: bytes | None, entries: int = 2) -> None:
    with AuditLog(str(path), key=key) as log:
        for n in range(entries):
            log.record("append", f"orders.{n}", principal="svc")


def marker_of(path: Path) -> list[tuple[str, str]]:
    with closing(sqlite3.connect(path)) as db, db:
        rows: list[tuple[str, str]] = db.execute("SELECT name, value FROM audit_meta").fetchall()
    return rows


def verify(
    path: Path,
    key: bytes | None,
    *,
    expect_count: int | None = None,
    expect_head: str | None = None,
) -> AuditVerification:
    with AuditLog(str(path), key=key, read_only=True) as log:
        return log.verify(expect_count=expect_count, expect_head=expect_head)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_new_file_records_its_key_setting_without_the_key(tmp_path: Path) -> None:
    make_log(tmp_path / "keyed.db", KEY)
    make_log(tmp_path / "plain.db", None)
    fingerprint = hmac.new(KEY, b"pepperpy-event audit log key fingerprint v1", "sha256")
    assert marker_of(tmp_path / "keyed.db") == [("hmac_key", fingerprint.hexdigest()[:16])]
    assert marker_of(tmp_path / "plain.db") == [("hmac_key", "none")]
    assert key_fingerprint(KEY) != key_fingerprint(OTHER)
    assert KEY.hex()[:16] != key_fingerprint(KEY)
    make_log(tmp_path / "empty.db", KEY, entries=0)  # marked when made, before any entry
    assert marker_of(tmp_path / "empty.db") == [("hmac_key", key_fingerprint(KEY))]


def test_verify_names_a_missing_or_wrong_key(tmp_path: Path) -> None:
    keyed, plain = tmp_path / "keyed.db", tmp_path / "plain.db"
    make_log(keyed, KEY)
    make_log(plain, None)
    intact = verify(keyed, KEY)
    assert intact.ok and intact.kind is None and intact.checked == 2
    missing = verify(keyed, None)
    assert (missing.ok, missing.kind, missing.checked) == (False, "missing_key", 0)
    assert missing.first_bad_sequence is None
    assert "HMAC-keyed" in str(missing.reason) and "no key was given" in str(missing.reason)
    wrong = verify(keyed, OTHER)
    assert (wrong.ok, wrong.kind, wrong.checked) == (False, "wrong_key", 0)
    assert key_fingerprint(OTHER) in str(wrong.reason) and key_fingerprint(KEY) in str(wrong.reason)
    unexpected = verify(plain, KEY)
    assert (unexpected.ok, unexpected.kind) == (False, "not_keyed")
    assert verify(plain, None).ok
    empty = tmp_path / "empty.db"
    make_log(empty, KEY, entries=0)  # nothing to verify: only the fingerprint can tell
    assert verify(empty, OTHER).kind == "wrong_key"
    assert verify(empty, KEY).ok


@pytest.mark.parametrize(
    ("made_with", "opened_with", "says"),
    [
        (KEY, None, "is HMAC-keyed (it records so) and no key was given"),
        (KEY, OTHER, "is HMAC-keyed under another key than the one given"),
        (None, KEY, "is not HMAC-keyed (it records so), but a key was given"),
    ],
)
def test_a_writer_under_another_key_setting_is_refused_before_it_writes(
    tmp_path: Path, made_with: bytes | None, opened_with: bytes | None, says: str
) -> None:
    """Such a writer appended entries no reader could verify: the chain broke there."""
    path = tmp_path / "audit.db"
    make_log(path, made_with)
    before = sha256(path)
    with pytest.raises(ConfigurationError, match=re.escape(says)):
        AuditLog(str(path), key=opened_with)
    assert sha256(path) == before
    assert verify(path, made_with).ok


def test_writers_making_one_file_at_once_agree_on_its_key(tmp_path: Path) -> None:
    path = str(tmp_path / "audit.db")
    outcomes: list[bytes | None | ConfigurationError] = []
    start = threading.Barrier(8)

    def open_and_record(key: bytes | None) -> None:
        start.wait()
        try:
            with AuditLog(path, key=key) as log:
                log.record("append", "orders.1")
            outcomes.append(key)
        except ConfigurationError as exc:
            outcomes.append(exc)

    threads = [
        threading.Thread(target=open_and_record, args=(KEY if n % 2 else None,)) for n in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    written = [key for key in outcomes if not isinstance(key, ConfigurationError)]
    refused = [key for key in outcomes if isinstance(key, ConfigurationError)]
    assert len(written) == len(refused) == 4  # the first to make the file set its key
    winner = written[0]
    assert all(key == winner for key in written)
    result = verify(Path(path), winner)
    assert result.ok and result.checked == 4


def edit(path: Path, sql: str, *parameters: object) -> None:
    with closing(sqlite3.connect(path)) as db, db:
        db.execute(sql, parameters)
    db.close()


@pytest.mark.parametrize("key", [None, KEY], ids=["sha256", "hmac"])
def test_every_failure_has_a_kind(tmp_path: Path, key: bytes | None) -> None:
    path = tmp_path / "audit.db"
    make_log(path, key, entries=3)
    head = verify(path, key)
    edit(
        path,
        "UPDATE audit_log SET body = CAST(replace(body, 'orders.1', 'orders.9') AS BLOB) "
        "WHERE sequence = 1",
    )
    tampered = verify(path, key)
    assert (tampered.kind, tampered.first_bad_sequence) == ("tampered", 1)
    edit(path, "UPDATE audit_log SET body = 'garbage' WHERE sequence = 1")
    assert verify(path, key).kind == "malformed"
    make_log(path := tmp_path / "cut.db", key, entries=3)
    anchor = verify(path, key)
    edit(path, "DELETE FROM audit_log WHERE sequence = 2")
    assert verify(path, key).ok
    cut = verify(path, key, expect_count=anchor.checked, expect_head=anchor.head)
    assert cut.kind == "truncated"
    moved = verify(path, key, expect_head=anchor.head)
    assert moved.kind == "head_mismatch"
    assert head.kind is None


@pytest.mark.parametrize("key", [None, KEY], ids=["sha256", "hmac"])
def test_a_deleted_middle_entry_is_reported_as_missing(tmp_path: Path, key: bytes | None) -> None:
    # docs/security.md: verify() gives ok=False and a reason saying what is wrong; an
    # entry removed is tampering. Sequences are checked, not only the links: a removed
    # entry reads as what it is, not as a broken link from the next one
    path = tmp_path / "audit.db"
    make_log(path, key, entries=4)
    edit(path, "DELETE FROM audit_log WHERE sequence = 1")
    result = verify(path, key)
    assert (result.ok, result.kind, result.checked) == (False, "tampered", 1)
    assert result.reason == "entry 1 is missing"


def test_an_altered_marker_is_tampering_not_a_key_problem(tmp_path: Path) -> None:
    """The marker is in the file, which anyone who can write it may change: it only ever
    explains a failure; entries that verify under the key given show it was altered."""
    path = tmp_path / "audit.db"
    make_log(path, KEY)
    edit(path, "UPDATE audit_meta SET value = ?", key_fingerprint(OTHER))
    result = verify(path, KEY)
    assert (result.ok, result.kind) == (False, "tampered")
    assert "key marker was altered" in str(result.reason)
    edit(path, "UPDATE audit_meta SET value = 'not a fingerprint'")
    garbled = verify(path, KEY)
    assert (garbled.ok, garbled.kind) == (False, "malformed")
    # an unkeyed rewrite that claims to be unkeyed still fails for whoever holds the key
    edit(path, "UPDATE audit_meta SET value = 'none'")
    assert verify(path, KEY).kind == "not_keyed"


def test_files_without_a_marker_still_verify(tmp_path: Path) -> None:
    """Files written before the marker existed: verified as before, marked when a writer
    whose key setting their first entry verifies under opens them."""
    keyed, plain = tmp_path / "keyed.db", tmp_path / "plain.db"
    for path, key in ((keyed, KEY), (plain, None)):
        make_log(path, key)
        edit(path, "DROP TABLE audit_meta")
        assert verify(path, key).ok
    unknown = verify(keyed, None)  # the file cannot say whether a key is missing
    assert (unknown.kind, unknown.first_bad_sequence) == ("tampered", 0)
    assert "does not record whether it is HMAC-keyed" in str(unknown.reason)
    with AuditLog(str(plain), key=KEY) as mismatched:  # unmarked: not refused, not marked
        pass
    assert marker_of(plain) == []
    with AuditLog(str(keyed), key=KEY) as log:
        log.record("append", "orders.2")
    assert marker_of(keyed) == [("hmac_key", key_fingerprint(KEY))]
    assert verify(keyed, KEY).checked == 3
    assert verify(keyed, None).kind == "missing_key"
    assert mismatched.closed


def test_a_memory_log_reports_kinds_too() -> None:
    log = AuditLog(key=KEY)
    log.record("append", "orders.1")
    assert log.verify().kind is None
    assert log.verify(expect_count=5).kind == "truncated"
