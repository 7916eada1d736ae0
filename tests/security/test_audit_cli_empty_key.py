"""``pepperpy-event audit verify`` on an HMAC-keyed log with ``PEPPERPY_EVENT_AUDIT_KEY``
set to an empty string (a CI secret or deployment variable that expanded to nothing)
said the variable "is not set", sending the reader to look for the wrong fault; it now
adds that it holds an empty string."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from pepperpy.event.security import AuditLog


def verify(path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != "PEPPERPY_EVENT_AUDIT_KEY"}
    return subprocess.run(
        [sys.executable, "-m", "pepperpy.event", "audit", "verify", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**environment, **env},
    )


def test_an_empty_key_variable_is_named_as_empty(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    with AuditLog(str(path), key=b"k" * 32) as log:
        log.record("shred", "customer.1", principal="svc.dpo")
    empty = verify(path, PEPPERPY_EVENT_AUDIT_KEY="")
    assert empty.returncode == 1
    assert "which is not set (it holds an empty string)" in empty.stderr
    assert "Traceback" not in empty.stderr
    unset = verify(path)
    assert unset.returncode == 1
    assert "PEPPERPY_EVENT_AUDIT_KEY, which is not set\n" in unset.stderr
    keyed = verify(path, PEPPERPY_EVENT_AUDIT_KEY=(b"k" * 32).hex())
    assert keyed.returncode == 0, keyed.stderr
