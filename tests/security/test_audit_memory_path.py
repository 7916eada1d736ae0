"""``AuditLog(":memory:")`` (SQLite's name for a database in memory) recorded entries
but could never read them: its reads open connections of their own, which found no such
file (``StoreError: could not read the audit log ':memory:' ... the file does not
exist``), so ``verify()`` and ``entries()`` always failed. It is a memory log, as
``AuditLog()`` is."""

from __future__ import annotations

import pytest

from pepperpy.event.security import AuditLog


@pytest.mark.parametrize("path", [":memory:", ""])
def test_an_in_memory_path_is_a_memory_log(path: str) -> None:
    with AuditLog(path, key=b"k" * 32) as log:
        log.record("append", "orders.1", principal="svc.orders")
        log.record("delete", "orders.1", principal="svc.admin")
        assert [(e.action, e.principal) for e in log.entries()] == [
            ("append", "svc.orders"),
            ("delete", "svc.admin"),
        ]
        verified = log.verify()
        assert verified.ok and verified.checked == 2
