"""What the chain alone cannot tell: another log's file written under the same key.

docs/security.md says so ("put another log's file in its place") and that an anchored
head finds it: this holds it to that.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from pepperpy.event.security import AuditLog

KEY = b"k" * 32


def make_log(path: Path, key: bytes, target: str, entries: int) -> tuple[int, str]:
    with AuditLog(str(path), key=key) as log:
        for n in range(entries):
            log.record("append", f"{target}.{n}", principal="svc")
        result = log.verify()
    assert result.ok
    return result.checked, result.head


def test_another_logs_file_under_the_same_key_verifies_but_not_against_an_anchor(
    tmp_path: Path,
) -> None:
    production = tmp_path / "production.db"
    count, head = make_log(production, KEY, "orders", 3)
    make_log(tmp_path / "staging.db", KEY, "tests", 5)
    shutil.copy(tmp_path / "staging.db", production)  # the file put in its place
    with AuditLog(str(production), key=KEY, read_only=True) as log:
        alone = log.verify()
        anchored = log.verify(expect_count=count, expect_head=head)
    assert (alone.ok, alone.checked) == (True, 5)
    assert (anchored.ok, anchored.kind) == (False, "head_mismatch")


def test_a_log_under_a_key_of_its_own_refuses_another_logs_file(tmp_path: Path) -> None:
    production = tmp_path / "production.db"
    make_log(production, KEY, "orders", 3)
    make_log(tmp_path / "staging.db", b"s" * 32, "tests", 5)
    shutil.copy(tmp_path / "staging.db", production)
    with AuditLog(str(production), key=KEY, read_only=True) as log:
        result = log.verify()
    assert (result.ok, result.kind) == (False, "wrong_key")
