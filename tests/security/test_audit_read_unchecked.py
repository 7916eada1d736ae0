"""entries() and `audit show` return entries as stored, without checking the chain.

docs/security.md says so ("Trust what they show only once verify() ... passed"): an
entry edited in an unkeyed log, whose hash no longer fits, is returned as edited, and
only verify() tells. This holds the documentation to it.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import orjson
import pytest

from pepperpy.event.cli import main
from pepperpy.event.security import AuditLog


def test_an_edited_entry_is_shown_as_edited_and_only_verify_tells(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "audit.db"
    with AuditLog(str(path)) as log:
        log.record("delete", "orders.1", principal="svc.mallory")
    with closing(sqlite3.connect(path)) as db, db:
        (body,) = db.execute("SELECT body FROM audit_log").fetchone()
        entry = orjson.loads(body)
        entry["principal"] = "svc.alice"
        db.execute(
            "UPDATE audit_log SET body = ?", (orjson.dumps(entry, option=orjson.OPT_SORT_KEYS),)
        )
    with AuditLog(str(path), read_only=True) as log:
        assert [shown.principal for shown in log.entries()] == ["svc.alice"]
        result = log.verify()
    assert (result.ok, result.kind, result.reason) == (
        False,
        "tampered",
        "entry content does not match its hash",
    )
    main(["audit", "show", str(path)])
    assert " svc.alice delete orders.1 ok" in capsys.readouterr().out
