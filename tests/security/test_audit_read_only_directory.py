"""An audit log in a directory SQLite cannot write is verified and shown, read-only.

``AuditLog(path, read_only=True)``, and so ``pepperpy-event audit verify|show``, only
read; but a log in WAL mode needs its ``-wal`` and ``-shm`` files beside it even to be
read, and a log closed cleanly has none. In a directory that cannot take them (a
read-only mount, an immutable directory, a directory the auditor may only read) they
failed: "attempt to write a readonly database" (a write was never asked for) or "unable
to open database file", with no way round. Now such a log, with no ``-wal`` holding
entries, is read as immutable (nothing can be writing it there): it verifies (a
tampered copy still fails), it is shown, and the file is left as it was. A log whose
``-wal`` holds entries is refused, saying why and what to do; a log changed while read
so is refused instead of given a verdict; a writer (``AuditLog(path)``) there names the
directory and points to ``read_only=True``. The three kinds of directory:
``tests/store/unwritable_directories.py`` (the mount and the immutable one need root,
and are skipped, saying so, without it).
"""

from __future__ import annotations

import hashlib
import sqlite3
import sys
from contextlib import closing
from pathlib import Path

import pytest

from pepperpy.event.security import AuditLog
from tests.store.unwritable import DROP_WRITE_OVERRIDE, run_script
from tests.store.unwritable_directories import unwritable_directory

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="Linux file systems")

KEY = bytes(range(32))
KINDS = ["mount", "immutable", "permission"]

_READ = (
    DROP_WRITE_OVERRIDE
    + """
import contextlib, io, json, os, sys
drop_write_override()
from pepperpy.event.security import AuditLog
from pepperpy.event.cli import main

directory, what = sys.argv[1], sys.argv[2]
path = os.path.join(directory, "audit.db")
key = bytes(range(32))
report = {}

def failure(exc):
    return {"type": type(exc).__name__, "message": str(exc)}

def cli(name, *argv):
    out, err = io.StringIO(), io.StringIO()
    sys.argv = ["pepperpy-event", *argv]
    os.environ["PEPPERPY_EVENT_AUDIT_KEY"] = key.hex()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main()
            code = 0
        except SystemExit as exit:
            code = exit.code
    report[name] = {"code": code, "out": out.getvalue(), "err": err.getvalue()}

if what == "read":
    with AuditLog(path, key=key, read_only=True) as log:
        result = log.verify()
        report["verify"] = [result.ok, result.checked, result.head]
        report["targets"] = [entry.target for entry in log.entries()]
    with AuditLog(os.path.join(directory, "tampered.db"), key=key, read_only=True) as log:
        result = log.verify()
        report["tampered"] = [result.ok, result.kind, result.first_bad_sequence]
    try:
        AuditLog(path, key=key).close()
        report["writer"] = "opened"
    except Exception as exc:
        report["writer"] = failure(exc)
    cli("cli_verify", "audit", "verify", path)
    cli("cli_show", "audit", "show", path)
elif what == "changed":
    log = AuditLog(path, key=key, read_only=True)
    entries = log.iter_entries()
    report["first"] = next(entries).target
    info = os.stat(path)  # the file changes under the read (its owner may touch it)
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns + 1_000_000_000))
    try:
        report["rest"] = [entry.target for entry in entries]
    except Exception as exc:
        report["rest"] = failure(exc)
    log.close()
else:
    try:
        AuditLog(path, key=key, read_only=True).close()
        report["open"] = "opened"
    except Exception as exc:
        report["open"] = failure(exc)
print(json.dumps(report))
"""
)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _prepare(tmp_path: Path) -> tuple[Path, Path, str]:
    """A keyed log of three entries and a tampered copy, both closed cleanly; its head."""
    staged = tmp_path / "staged"
    staged.mkdir()
    log_file, tampered = staged / "audit.db", staged / "tampered.db"
    heads = []
    for path in (log_file, tampered):
        with AuditLog(str(path), key=KEY) as log:
            for n in range(3):
                log.record("append", f"orders.{n}", principal="svc.orders")
            heads.append(log.verify().head)
    with closing(sqlite3.connect(tampered)) as db, db:
        db.execute(
            "UPDATE audit_log SET body = CAST(replace(body, 'orders.1', 'orders.9') AS BLOB) "
            "WHERE sequence = 1"
        )
    db.close()
    assert not list(staged.glob("*-wal"))
    return log_file, tampered, heads[0]


@pytest.mark.parametrize("kind", KINDS)
def test_a_log_in_such_a_directory_verifies_and_shows_read_only(tmp_path: Path, kind: str) -> None:
    log_file, tampered, head = _prepare(tmp_path)
    directory = tmp_path / "archive"
    path = directory / "audit.db"
    with unwritable_directory(directory, kind, [log_file, tampered]) as why:
        before = sha256(path)
        report = run_script(_READ, directory, "read")
        assert sha256(path) == before
        assert sorted(p.name for p in directory.iterdir()) == ["audit.db", "tampered.db"]
    assert report["verify"] == [True, 3, head], report
    assert report["targets"] == ["orders.0", "orders.1", "orders.2"]
    assert report["tampered"] == [False, "tampered", 1], report
    writer = report["writer"]
    assert isinstance(writer, dict) and writer["type"] == "StoreError", writer
    message = writer["message"]
    assert message.startswith(f"could not open the audit log {str(path)!r}: "), message
    assert f"its directory {str(directory)!r} cannot be written ({why})" in message
    assert message.endswith(
        "to verify or show the log, open it with read_only=True (as pepperpy-event audit does)"
    ), message
    verify, show = report["cli_verify"], report["cli_show"]
    assert verify == {
        "code": 0,
        "out": f"audit log {str(path)!r} is intact: 3 entries verified\nhead 3 {head}\n",
        "err": "",
    }, verify
    assert isinstance(show, dict) and show["code"] == 0, show
    assert [line.split()[-2] for line in str(show["out"]).splitlines()] == [
        "orders.0",
        "orders.1",
        "orders.2",
    ]


@pytest.mark.parametrize("kind", ["immutable", "permission"])  # nothing changes a mount
def test_a_log_changed_while_it_is_read_is_refused_not_judged(tmp_path: Path, kind: str) -> None:
    log_file, tampered, _ = _prepare(tmp_path)
    directory = tmp_path / "archive"
    with unwritable_directory(directory, kind, [log_file, tampered]):
        report = run_script(_READ, directory, "changed")
    assert report["first"] == "orders.0"
    rest = report["rest"]
    assert isinstance(rest, dict) and rest["type"] == "StoreError", report
    assert rest["message"].startswith(
        f"the audit log {str(directory / 'audit.db')!r} changed while it was read: it is "
        "read as immutable"
    ), rest


@pytest.mark.parametrize("kind", KINDS)
def test_a_log_whose_write_ahead_log_holds_entries_is_refused_saying_why(
    tmp_path: Path, kind: str
) -> None:
    """Immutable would not see them: the file and its -wal are copied from a log still
    open (as a copy of a live log's directory would be), without the -shm."""
    staged = tmp_path / "staged"
    staged.mkdir()
    log_file = staged / "audit.db"
    directory = tmp_path / "archive"
    with AuditLog(str(log_file), key=KEY) as log:
        log.record("append", "orders.0")
        wal = staged / "audit.db-wal"
        assert wal.stat().st_size > 0
        with unwritable_directory(directory, kind, [log_file, wal]) as why:
            report = run_script(_READ, directory, "wal")
            assert sorted(p.name for p in directory.iterdir()) == ["audit.db", "audit.db-wal"]
    path = directory / "audit.db"
    assert report["open"] == {
        "type": "StoreError",
        "message": f"could not open the audit log {str(path)!r}: its directory cannot be "
        f"written ({why}), so SQLite cannot make the -shm file it needs to read the "
        f"entries in its non-empty write-ahead log ({path}-wal), written since the log "
        "was last closed cleanly: copy the file and its -wal to a directory that can be "
        "written and read the copy",
    }
