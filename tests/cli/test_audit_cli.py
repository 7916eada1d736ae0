"""``pepperpy-event audit verify|show`` on a real audit log file, in a subprocess."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

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
    assert wrong.returncode == 1 and "NOT intact" in wrong.stderr
    missing = run("audit", "verify", str(tmp_path / "nope.db"))
    assert missing.returncode == 1 and "no audit log" in missing.stderr
