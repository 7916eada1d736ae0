"""``pepperpy-event audit verify|show`` on a real audit log file, in a subprocess."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

from pepperpy.event import Event, EventStore
from pepperpy.event.security import AuditLog


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pepperpy.event", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_verify_and_show_an_intact_log_then_catch_tampering(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    log = AuditLog(str(path))
    log.record("append", "orders.1", principal="svc.orders")
    log.record("delete", "orders.1", principal="admin")
    log.close()

    ok = run("audit", "verify", str(path))
    assert ok.returncode == 0, ok.stderr
    assert "intact: 2 entries verified" in ok.stdout
    shown = run("audit", "show", str(path))
    assert shown.returncode == 0
    lines = shown.stdout.splitlines()
    assert lines[0].startswith("0 ") and lines[0].endswith("svc.orders append orders.1 ok")
    assert lines[1].endswith("admin delete orders.1 ok")

    db = sqlite3.connect(path)
    db.execute("UPDATE audit_log SET body = replace(body, 'admin', 'intruder') WHERE sequence = 1")
    db.commit()
    db.close()
    bad = run("audit", "verify", str(path))
    assert bad.returncode == 1
    assert "NOT intact: entry 1" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_keyed_logs_need_their_key(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    key = b"k" * 32
    log = AuditLog(str(path), key=key)
    log.record("append", "s.1")
    log.close()
    assert (
        run("audit", "verify", str(path), env={"PEPPERPY_EVENT_AUDIT_KEY": key.hex()}).returncode
        == 0
    )
    wrong = run("audit", "verify", str(path), env={"PEPPERPY_EVENT_AUDIT_KEY": (b"x" * 32).hex()})
    assert wrong.returncode == 1 and "another key than the one in" in wrong.stderr
    missing = run("audit", "verify", str(tmp_path / "nope.db"))
    assert missing.returncode == 1 and "no audit log" in missing.stderr


def fingerprint(path: Path) -> bytes:
    return hashlib.sha256(path.read_bytes()).digest()


def test_verify_refuses_what_is_not_an_audit_log_and_leaves_it_alone(tmp_path: Path) -> None:
    empty = tmp_path / "empty.log"
    empty.write_bytes(b"")
    text = tmp_path / "notes.txt"
    text.write_text("not a database\n" * 100)
    store = tmp_path / "events.db"

    async def fill() -> None:
        async with EventStore(f"sqlite:///{store}") as events:
            await events.append("user.1", Event("user.created", {}))

    asyncio.run(fill())
    for path in (empty, text, store):
        before = fingerprint(path)
        for command in ("verify", "show"):
            done = run("audit", command, str(path))
            assert done.returncode == 1, (path, command, done.stdout)
            assert done.stderr.strip() == (
                f"pepperpy-event: error: {str(path)!r} is not an audit log (no audit_log table)"
            )
        assert fingerprint(path) == before, path
    with closing(sqlite3.connect(store)) as raw:
        tables = raw.execute("SELECT name FROM sqlite_master").fetchall()
    assert ("audit_log",) not in tables


def head_of(done: subprocess.CompletedProcess[str]) -> tuple[str, str]:
    assert done.returncode == 0, done.stderr
    word, count, digest = done.stdout.splitlines()[-1].split()
    assert word == "head"
    return count, digest


def test_a_recorded_head_catches_removed_newest_entries(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    log = AuditLog(str(path))
    for n in range(3):
        log.record("append", f"orders.{n}")
    log.close()
    count, digest = head_of(run("audit", "verify", str(path)))
    assert count == "3" and len(digest) == 64
    anchored = ("--expect-count", count, "--expect-head", digest)
    assert head_of(run("audit", "verify", str(path), *anchored)) == (count, digest)

    db = sqlite3.connect(path)
    db.execute("DELETE FROM audit_log WHERE sequence = 2")
    db.commit()
    assert run("audit", "verify", str(path)).returncode == 0  # the chain alone cannot tell
    cut = run("audit", "verify", str(path), *anchored)
    assert cut.returncode == 1 and "Traceback" not in cut.stderr
    assert "NOT intact: entry 2: 1 of the 3 expected entries are missing" in cut.stderr
    head_only = run("audit", "verify", str(path), "--expect-head", digest)
    assert head_only.returncode == 1 and "expected head hash is not in the log" in head_only.stderr
    db.execute("DELETE FROM audit_log")
    db.commit()
    db.close()
    emptied = run("audit", "verify", str(path), "--expect-count", count)
    assert emptied.returncode == 1 and "3 of the 3 expected entries are missing" in emptied.stderr


def test_a_recorded_head_still_verifies_after_the_log_grows(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    log = AuditLog(str(path))
    log.record("append", "orders.1")
    count, digest = head_of(run("audit", "verify", str(path)))
    log.record("append", "orders.2")
    log.close()
    grown = run("audit", "verify", str(path), "--expect-count", count, "--expect-head", digest)
    assert head_of(grown)[0] == "2"
    bad = run("audit", "verify", str(path), "--expect-head", "xyz")
    assert bad.returncode == 1 and "--expect-head must be 64 hex digits" in bad.stderr


def test_show_prints_one_line_per_entry_whatever_its_text(tmp_path: Path) -> None:
    """A principal with a newline forged a whole extra entry in ``show``'s output."""
    path = tmp_path / "audit.db"
    forged = "mallory x\n7 2026-01-01T00:00:00+00:00 admin delete orders.9 ok\n8 -"
    log = AuditLog(str(path))
    log.record("append", "orders.1", principal=forged)
    log.record("append", "orders\r2\u202e", principal="svc")
    log.record("append", "orders.3")  # no principal
    log.record("append", "orders.4", principal="-")
    log.close()
    shown = run("audit", "show", str(path))
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert len(lines) == 4
    first = lines[0].split(" ", 2)[2]  # after SEQUENCE and TIME
    assert first == json.dumps(forged) + " append orders.1 ok"
    assert json.loads(first.rsplit(" ", 3)[0]) == forged  # the quoted field reads back
    assert lines[1].split(" ", 2)[2] == 'svc append "orders\\r2\\u202e" ok'
    assert lines[2].split(" ", 2)[2] == "- append orders.3 ok"
    assert lines[3].split(" ", 2)[2] == '"-" append orders.4 ok'  # not "no principal"


def keyed_and_plain_logs(tmp_path: Path) -> tuple[Path, Path, str]:
    key = b"k" * 32
    keyed, plain = tmp_path / "keyed.db", tmp_path / "plain.db"
    for path, log_key in ((keyed, key), (plain, None)):
        log = AuditLog(str(path), key=log_key)
        log.record("append", "orders.1")
        log.record("append", "orders.2")
        log.close()
    return keyed, plain, key.hex()


def test_verify_names_a_key_problem_as_such(tmp_path: Path) -> None:
    """A key mismatch was reported as tampering at entry 0, with no word about the key;
    then guessed at by verifying again under the other key setting. The log file now
    records whether it is keyed (and the key's fingerprint): the command says which."""
    keyed, plain, key = keyed_and_plain_logs(tmp_path)
    no_key = {"PEPPERPY_EVENT_AUDIT_KEY": ""}
    cases = [
        (
            keyed,
            no_key,
            "is HMAC-keyed: put its key (hex) in PEPPERPY_EVENT_AUDIT_KEY, which is not set",
        ),
        (plain, {"PEPPERPY_EVENT_AUDIT_KEY": key}, "is not HMAC-keyed, but PEPPERPY_EVENT_AUDIT"),
        (
            keyed,
            {"PEPPERPY_EVENT_AUDIT_KEY": "ab" * 32},
            "is HMAC-keyed under another key than the one in PEPPERPY_EVENT_AUDIT_KEY",
        ),
    ]
    for path, env, says in cases:
        done = run("audit", "verify", str(path), env=env)
        assert done.returncode == 1 and len(done.stderr.splitlines()) == 1, done.stderr
        assert done.stderr.startswith(f"pepperpy-event: error: audit log {str(path)!r} {says}")
        assert "NOT intact" not in done.stderr, done.stderr  # nothing says it was altered


def test_a_keyed_log_altered_at_entry_0_is_not_taken_for_a_key_problem(tmp_path: Path) -> None:
    """With the right key, an altered first entry was reported as 'the key may be wrong,
    or entry 0 was altered': the command could not tell. Now it can."""
    keyed, _, key = keyed_and_plain_logs(tmp_path)
    db = sqlite3.connect(keyed)
    db.execute(
        "UPDATE audit_log SET body = CAST(replace(body, 'orders.1', 'orders.9') AS BLOB) "
        "WHERE sequence = 0"
    )
    db.commit()
    db.close()
    bad = run("audit", "verify", str(keyed), env={"PEPPERPY_EVENT_AUDIT_KEY": key})
    assert bad.returncode == 1
    assert bad.stderr.strip() == (
        f"pepperpy-event: error: audit log {str(keyed)!r} is NOT intact: entry 0: entry "
        "content does not match its hash (0 entries before it verified)"
    )


def test_a_log_file_without_a_key_marker_still_verifies(tmp_path: Path) -> None:
    """Logs written before the marker existed verify as before; a failure of their first
    entry says the key setting may be the cause, as the file cannot tell."""
    keyed, plain, key = keyed_and_plain_logs(tmp_path)
    for path in (keyed, plain):
        db = sqlite3.connect(path)
        db.execute("DROP TABLE audit_meta")
        db.commit()
        db.close()
    assert run("audit", "verify", str(plain), env={"PEPPERPY_EVENT_AUDIT_KEY": ""}).returncode == 0
    assert run("audit", "verify", str(keyed), env={"PEPPERPY_EVENT_AUDIT_KEY": key}).returncode == 0
    unknown = run("audit", "verify", str(keyed), env={"PEPPERPY_EVENT_AUDIT_KEY": ""})
    assert unknown.returncode == 1 and "NOT intact: entry 0: " in unknown.stderr
    assert "does not record whether it is HMAC-keyed" in unknown.stderr


def test_verify_names_no_key_when_a_later_entry_was_altered(tmp_path: Path) -> None:
    keyed, plain, key = keyed_and_plain_logs(tmp_path)
    for path, env in ((keyed, {"PEPPERPY_EVENT_AUDIT_KEY": key}), (plain, {})):
        db = sqlite3.connect(path)
        db.execute(
            "UPDATE audit_log SET body = CAST(replace(body, 'orders.2', 'orders.9') AS BLOB) "
            "WHERE sequence = 1"
        )
        db.commit()
        db.close()
        bad = run("audit", "verify", str(path), env={"PEPPERPY_EVENT_AUDIT_KEY": "", **env})
        assert bad.returncode == 1
        assert "NOT intact: entry 1: " in bad.stderr
        assert "PEPPERPY_EVENT_AUDIT_KEY" not in bad.stderr, bad.stderr
    db = sqlite3.connect(plain)  # a first entry edited out of shape: not the key's doing
    db.execute("UPDATE audit_log SET body = 'garbage' WHERE sequence = 0")
    db.commit()
    db.close()
    malformed = run("audit", "verify", str(plain), env={"PEPPERPY_EVENT_AUDIT_KEY": ""})
    assert "NOT intact: entry 0: malformed row" in malformed.stderr
    assert "PEPPERPY_EVENT_AUDIT_KEY" not in malformed.stderr, malformed.stderr


def test_one_entry_is_one_entry_and_a_short_key_names_its_variable(tmp_path: Path) -> None:
    """'1 entries verified' read wrong; a key of too few bytes said 'the audit key must
    be at least 16 bytes', naming no PEPPERPY_EVENT_AUDIT_KEY."""
    path = tmp_path / "audit.db"
    log = AuditLog(str(path), key=b"k" * 32)
    log.record("append", "s.1")
    log.close()
    ok = run("audit", "verify", str(path), env={"PEPPERPY_EVENT_AUDIT_KEY": (b"k" * 32).hex()})
    assert ok.returncode == 0, ok.stderr
    assert "is intact: 1 entry verified\n" in ok.stdout
    short = run("audit", "verify", str(path), env={"PEPPERPY_EVENT_AUDIT_KEY": "6b6b"})
    assert short.returncode == 1
    assert short.stderr == (
        "pepperpy-event: error: PEPPERPY_EVENT_AUDIT_KEY: the audit key must be at least 16 "
        "bytes, got 2 (2 hex digits a byte)\n"
    )
