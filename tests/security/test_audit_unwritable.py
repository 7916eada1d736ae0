"""The audit log on a file past a size limit (``RLIMIT_FSIZE`` standing for a full disk).

Its writes run in one write transaction (``_sqlite.write_transaction``, shared with the
checkpoint store): when SQLite ends the transaction itself on a failed write or
``COMMIT``, a ``ROLLBACK`` after it would fail with "cannot rollback - no transaction is
active" and hide the error that matters. Promised here: every record that cannot be
written fails with a :class:`StoreError` naming the entry, the file and SQLite's own
error; no entry is half written; once there is room again, records go on and the chain
verifies, in one unbroken sequence. Runs in a subprocess (``tests/store/unwritable.py``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.store.unwritable import run_script

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_FSIZE")

_FULL_DISK = """
import json, os, resource, signal, sys
from pepperpy.event import StoreError
from pepperpy.event.security import AuditLog

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a signal
directory = sys.argv[1]
path = os.path.join(directory, "audit.db")
report = {}
log = AuditLog(path)
for n in range(5):
    log.record("policy.changed", f"rule {n}")
largest = max(os.path.getsize(os.path.join(directory, name)) for name in os.listdir(directory))
resource.setrlimit(resource.RLIMIT_FSIZE, (largest + 60_000, resource.RLIM_INFINITY))
recorded, errors = 5, []
for n in range(5, 500):
    try:
        log.record("access.denied", f"stream {n}", details={"pad": "x" * 3000})
    except StoreError as exc:
        errors.append(str(exc))
        if len(errors) == 3:
            break
    else:
        recorded += 1
resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
log.record("policy.changed", "room again")
verified = log.verify()
report = {
    "errors": errors,
    "recorded": recorded + 1,
    "checked": verified.checked,
    "ok": verified.ok,
    "sequences": [entry.sequence for entry in log.entries()],
}
log.close()
print(json.dumps(report))
"""


def test_records_past_a_size_limit_fail_with_sqlites_error_and_the_chain_goes_on(
    tmp_path: Path,
) -> None:
    report = run_script(_FULL_DISK, tmp_path)
    errors = report["errors"]
    assert isinstance(errors, list) and len(errors) == 3, report  # the limit was reached
    for message in errors:
        assert message.startswith("could not record 'access.denied' 'stream "), message
        assert str(tmp_path / "audit.db") in message
        assert "disk I/O error" in message or "database or disk is full" in message, message
        assert "cannot rollback" not in message and "no transaction" not in message
    recorded = report["recorded"]
    assert report["ok"] is True and report["checked"] == recorded, report
    assert report["sequences"] == list(range(recorded)), report  # none half written
