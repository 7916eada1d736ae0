"""Reading a large audit log: verify(), iter_entries() and ``audit show`` page through it."""

from __future__ import annotations

import hashlib
import io
import sqlite3
import sys
import tracemalloc
from collections.abc import Callable
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pepperpy.event.security import AuditLog
from pepperpy.event.security._audit_entries import GENESIS, AuditEntry

SMALL, LARGE = 2_000, 20_000


def build(path: Path, count: int) -> str:
    """A valid unkeyed chain of ``count`` append entries, written straight to the file
    (recording each would take one fsync per entry); returns its head hash."""
    AuditLog(str(path)).close()  # the tables and the key marker
    previous, rows = GENESIS, []
    now = datetime.now(UTC)
    for sequence in range(count):
        details = {"events": 1, "ids": [f"01a2487e-0000-7000-8000-{sequence:012d}"]}
        body = AuditEntry(
            sequence, now, "svc.orders", "append", f"orders.{sequence}", "ok", details, previous
        ).body()
        previous = hashlib.sha256(previous.encode() + body).hexdigest()
        rows.append((sequence, body, previous))
    with closing(sqlite3.connect(path)) as db, db:
        db.executemany("INSERT INTO audit_log (sequence, body, hash) VALUES (?, ?, ?)", rows)
    db.close()
    return previous


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> dict[int, tuple[Path, str]]:
    folder = tmp_path_factory.mktemp("audit_paging")
    return {
        count: (folder / f"{count}.db", build(folder / f"{count}.db", count))
        for count in (SMALL, LARGE)
    }


def peak(work: Callable[[], object]) -> int:
    """The peak of Python allocations while ``work`` runs, in bytes."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        work()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def bounded(small: int, large: int) -> bool:
    """10 times the entries may not take anywhere near 10 times the memory."""
    return large < 2 * small


@pytest.mark.parametrize("read_only", [True, False])
def test_verify_holds_a_page_not_the_log(
    logs: dict[int, tuple[Path, str]], read_only: bool
) -> None:
    results = {}

    def verify(count: int) -> None:
        with AuditLog(str(logs[count][0]), read_only=read_only) as log:
            results[count] = log.verify(expect_count=count, expect_head=logs[count][1])

    small, large = peak(lambda: verify(SMALL)), peak(lambda: verify(LARGE))
    assert results[SMALL].ok and results[SMALL].checked == SMALL
    assert results[LARGE].ok and results[LARGE].checked == LARGE
    assert results[LARGE].head == logs[LARGE][1]
    assert bounded(small, large), (small, large)


def test_iter_entries_holds_a_page_not_the_log(logs: dict[int, tuple[Path, str]]) -> None:
    seen = {}

    def walk(count: int) -> None:
        with AuditLog(str(logs[count][0]), read_only=True) as log:
            for entry in log.iter_entries():  # keeps nothing: only the log may hold memory
                seen[count] = entry.sequence

    small, large = peak(lambda: walk(SMALL)), peak(lambda: walk(LARGE))
    assert seen == {SMALL: SMALL - 1, LARGE: LARGE - 1}
    assert bounded(small, large), (small, large)


def test_audit_show_prints_as_it_reads(
    logs: dict[int, tuple[Path, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from pepperpy.event.cli._app import app

    class Counting(io.TextIOBase):
        """A stdout that keeps only a line count, so it holds no memory of its own."""

        lines = 0

        def write(self, text: str) -> int:
            self.lines += text.count("\n")
            return len(text)

    counts = {}

    def show(count: int) -> None:
        out = Counting()
        monkeypatch.setattr(sys, "stdout", out)
        try:
            app.main(["audit", "show", str(logs[count][0])], standalone_mode=False)
        finally:
            monkeypatch.undo()
        counts[count] = out.lines

    small, large = peak(lambda: show(SMALL)), peak(lambda: show(LARGE))
    assert counts == {SMALL: SMALL, LARGE: LARGE}
    assert bounded(small, large), (small, large)


def test_iter_entries_reads_one_snapshot_while_writers_go_on(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    build(path, 1_500)  # more than one page
    with AuditLog(str(path)) as log:
        entries = log.iter_entries()
        first = next(entries)
        log.record("append", "orders.new", principal="svc.late")  # not held up by the read
        rest = list(entries)
        assert first.sequence == 0 and [e.sequence for e in rest] == list(range(1, 1_500))
        assert log.entries()[-1].target == "orders.new"
        assert log.verify().checked == 1_501


def test_a_memory_log_pages_the_same(tmp_path: Path) -> None:
    log = AuditLog()
    for n in range(3):
        log.record("append", f"orders.{n}")
    assert [e.target for e in log.iter_entries()] == ["orders.0", "orders.1", "orders.2"]
    assert log.verify().checked == 3


# -- a changed key marker does not turn tampering into "wrong key" ----------------------

KEY = bytes(range(32))


def keyed_log(path: Path, key: bytes = KEY) -> None:
    with AuditLog(str(path), key=key) as log:
        for n in range(5):
            log.record("append", f"orders.{n}", principal="svc")


def tamper(path: Path, *, sequence: int = 0, marker: str | None = "0123456789abcdef") -> None:
    """Edit one entry's body, as someone without the key would, and maybe the marker."""
    with closing(sqlite3.connect(path)) as db, db:
        (body,) = db.execute(
            "SELECT body FROM audit_log WHERE sequence = ?", (sequence,)
        ).fetchone()
        db.execute(
            "UPDATE audit_log SET body = ? WHERE sequence = ?",
            (body.replace(b'"svc"', b'"bob"'), sequence),
        )
        if marker is not None:
            db.execute("UPDATE audit_meta SET value = ?", (marker,))
    db.close()


def test_a_tampered_first_entry_with_a_rewritten_marker_is_tampering(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    keyed_log(path)
    tamper(path)
    with AuditLog(str(path), key=KEY, read_only=True) as log:
        result = log.verify()
    assert not result.ok
    assert result.kind == "tampered", result
    assert result.first_bad_sequence == 0
    assert result.reason is not None and "key marker was altered" in result.reason


def test_a_deleted_first_entry_with_a_rewritten_marker_is_tampering(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    keyed_log(path)
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("DELETE FROM audit_log WHERE sequence = 0")
        db.execute("UPDATE audit_meta SET value = '0123456789abcdef'")
    db.close()
    with AuditLog(str(path), key=KEY, read_only=True) as log:
        result = log.verify()
    assert (result.ok, result.kind, result.first_bad_sequence) == (False, "tampered", 1)
    assert result.reason is not None and "entry 0 is missing" in result.reason


def test_audit_verify_reports_it_as_tampering_not_as_the_operators_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pepperpy.event.cli._app import app
    from pepperpy.event.cli._errors import CommandError

    path = tmp_path / "audit.db"
    keyed_log(path)
    tamper(path)
    monkeypatch.setenv("PEPPERPY_EVENT_AUDIT_KEY", KEY.hex())
    with pytest.raises(CommandError) as failed:  # printed as one line, exit status 1
        app.main(["audit", "verify", str(path)], standalone_mode=False)
    assert "NOT intact: entry 0" in str(failed.value)
    assert "set the log's key" not in str(failed.value)


@pytest.mark.parametrize("edited", [None, 0, 3])
def test_a_log_written_under_another_key_is_still_the_wrong_key(
    tmp_path: Path, edited: int | None
) -> None:
    path = tmp_path / "audit.db"
    keyed_log(path, key=b"another key, 32 bytes long......")
    if edited is not None:
        tamper(path, sequence=edited, marker=None)
    with AuditLog(str(path), key=KEY, read_only=True) as log:
        result = log.verify()
    assert (result.ok, result.kind, result.checked) == (False, "wrong_key", 0)
