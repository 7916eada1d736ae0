"""Entries a file log writes later (record_off_loop: a denial on a running loop) keep
their place in the chain: before anything recorded after them, with the time they
happened. And a log whose writer thread cannot start writes the entry itself."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from pepperpy.event import AccessDenied
from pepperpy.event.security import AccessControl, AuditLog, acting_as


class Holder:
    """Another connection holding the audit file's write lock until released."""

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("BEGIN IMMEDIATE")

    def release(self) -> None:
        self.db.execute("ROLLBACK")
        self.db.close()


async def test_a_denial_queued_on_the_loop_precedes_a_policy_change_made_after_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "audit.db"
    with AuditLog(str(path), busy_timeout=10) as log:
        log.record("setup", "-")  # the file exists with its schema
        acl = AccessControl(default="deny", audit=log)
        holder = Holder(path)  # the denial cannot be written yet: it is queued
        try:
            with acting_as("svc.a"), pytest.raises(AccessDenied):
                acl.check("append", "orders.1")
            denied_at = log._queued[0].at  # type: ignore[attr-defined]
            changing = threading.Thread(target=setattr, args=(acl, "default", "allow"))
            changing.start()  # a policy change after the denial, from another thread
            changing.join(0.2)
        finally:
            holder.release()
        changing.join(10)
        assert not changing.is_alive()
        entries = log.entries()
        assert log.verify().ok
    kinds = [(e.action, e.outcome) for e in entries]
    assert kinds == [("setup", "ok"), ("append", "denied"), ("policy.default", "ok")]
    assert entries[1].at == denied_at  # the time of the denial, not of the write


def test_a_writer_thread_that_cannot_start_leaves_the_entry_written_and_the_log_usable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    real_start = threading.Thread.start

    def start(self: threading.Thread, *args: Any, **kwargs: Any) -> None:
        if self.name == "pepperpy-audit-writer":
            raise RuntimeError("can't start new thread")
        real_start(self, *args, **kwargs)

    monkeypatch.setattr(threading.Thread, "start", start)
    path = tmp_path / "audit.db"
    log = AuditLog(str(path))
    acl = AccessControl(default="deny", audit=log)

    async def main() -> None:
        with acting_as("svc.a"):
            for _ in range(2):
                with pytest.raises(AccessDenied):
                    acl.check("append", "orders.1")

    asyncio.run(main())
    closing = threading.Thread(target=log.close)
    closing.start()
    closing.join(10)
    assert not closing.is_alive(), "close() waited for a writer that never ran"
    with AuditLog(str(path)) as reader:
        assert [e.outcome for e in reader.entries()] == ["denied", "denied"]
