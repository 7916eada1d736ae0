"""A denial's audit entry never blocks the event loop, even when the audit file is busy.

Another writer holds the audit file's write lock (as another service sharing the file
may, for up to its busy timeout). Every denied call must still give the loop back at
once: async calls wait for the file on a worker thread and raise ``AccessDenied`` once
the entry is written; synchronous calls raise at once and leave the entry to the log's
writer thread. Before, each denial wrote its entry on the loop, which froze until the
lock was released (or ``busy_timeout`` ran out and the call raised ``StoreError``).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pepperpy.event import AccessDenied, ClosedError, EventBus, EventStore
from pepperpy.event.security import AccessControl, AuditLog, acting_as

#: long enough that no pause of a loaded test machine outlasts it while the lock is held
BUSY = 3.0


@pytest.fixture
def audit_path(tmp_path: Path) -> Path:
    return tmp_path / "audit.db"


@pytest.fixture
def log(audit_path: Path) -> Iterator[AuditLog]:
    with AuditLog(str(audit_path), busy_timeout=BUSY) as log:
        yield log


class Holder:
    """Another connection holding the audit file's write lock until released."""

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("BEGIN IMMEDIATE")

    def release(self) -> None:
        if self.db.in_transaction:
            self.db.execute("ROLLBACK")
        self.db.close()


def denials(log: AuditLog) -> list[tuple[str | None, str, str]]:
    return [(e.principal, e.action, e.target) for e in log.entries() if e.outcome == "denied"]


async def denied_while_locked(path: Path, call: Callable[[], Awaitable[Any]]) -> None:
    """Run ``call`` while the file is locked: it must wait off the loop, then be denied."""
    holder = Holder(path)
    try:
        task = asyncio.ensure_future(call())
        for _ in range(5):  # the loop keeps running other work meanwhile
            await asyncio.sleep(0)
        if task.done():  # it ran to its end without giving the loop back
            outcome = task.exception()
            pytest.fail(f"the denial was written on the event loop, which waited; {outcome!r}")
    finally:
        holder.release()
    with pytest.raises(AccessDenied):
        await task


async def test_async_store_reads_write_the_denial_off_the_loop(
    audit_path: Path, log: AuditLog
) -> None:
    acl = AccessControl(default="deny")
    async with EventStore(access=acl, audit=log) as store:
        with acting_as("svc.reporting"):
            await denied_while_locked(audit_path, lambda: store.streams("hr.#"))
            await denied_while_locked(audit_path, lambda: store.stream_version("hr.1"))
            await denied_while_locked(audit_path, lambda: store.load_snapshot("hr.1"))
            await denied_while_locked(
                audit_path, lambda: store.append("hr.1", {"type": "salary.set", "data": {}})
            )
    assert denials(log) == [
        ("svc.reporting", "read", "hr.#"),
        ("svc.reporting", "read", "hr.1"),
        ("svc.reporting", "read", "hr.1"),
        ("svc.reporting", "append", "hr.1"),
    ]


async def test_an_access_controls_own_log_is_written_off_the_loop_too(
    audit_path: Path, log: AuditLog
) -> None:
    acl = AccessControl(default="deny", audit=log)  # the store has no log of its own
    async with EventStore(access=acl) as store:
        with acting_as("svc.reporting"):
            await denied_while_locked(audit_path, lambda: store.stream_version("hr.1"))
        await denied_while_locked(audit_path, lambda: acl.acheck("read", "hr.2", "svc.x"))
    assert denials(log) == [("svc.reporting", "read", "hr.1"), ("svc.x", "read", "hr.2")]


async def test_bus_publish_writes_the_denial_off_the_loop(audit_path: Path, log: AuditLog) -> None:
    acl = AccessControl(default="deny", audit=log)
    bus = EventBus(access=acl)
    try:
        with acting_as("svc.mailer"):
            await denied_while_locked(audit_path, lambda: bus.publish("orders.created", {}))
    finally:
        await bus.close()
    assert denials(log) == [("svc.mailer", "publish", "orders.created")]


async def test_synchronous_denials_raise_at_once_and_the_writer_thread_records_them(
    audit_path: Path, log: AuditLog
) -> None:
    acl = AccessControl(default="deny", audit=log)
    bus = EventBus(access=acl)
    try:
        async with EventStore(access=acl) as store:
            holder = Holder(audit_path)
            try:
                with acting_as("svc.reporting"):
                    calls: list[Callable[[], object]] = [
                        lambda: store.get_stream("hr.1"),
                        lambda: store.read_all(streams="hr.#"),
                        lambda: store.subscribe(streams="hr.#"),
                        lambda: bus.subscribe("hr.#"),
                        lambda: bus.on_error(print),
                        lambda: acl.check("delete", "hr.1"),
                    ]
                    for call in calls:
                        # before: blocked until busy_timeout, then StoreError ("locked")
                        with pytest.raises(AccessDenied):
                            call()
            finally:
                holder.release()
    finally:
        await bus.close()
    assert denials(log) == [  # in order, once the lock is gone
        ("svc.reporting", "read", "hr.1"),
        ("svc.reporting", "read", "hr.#"),
        ("svc.reporting", "read", "hr.#"),
        ("svc.reporting", "subscribe", "hr.#"),
        ("svc.reporting", "subscribe", "#"),
        ("svc.reporting", "delete", "hr.1"),
    ]
    assert log.verify().ok


def test_without_a_running_loop_a_denial_is_written_before_it_raises(
    audit_path: Path, log: AuditLog
) -> None:
    acl = AccessControl(default="deny", audit=log)
    with pytest.raises(AccessDenied):
        acl.check("read", "hr.1", "svc.x")
    with AuditLog(str(audit_path), read_only=True) as reader:  # another connection sees it
        assert [e.target for e in reader.entries()] == ["hr.1"]


async def test_close_writes_the_queued_denials_first(audit_path: Path) -> None:
    log = AuditLog(str(audit_path), busy_timeout=BUSY)
    acl = AccessControl(default="deny", audit=log)
    holder = Holder(audit_path)
    try:
        with pytest.raises(AccessDenied):
            acl.check("read", "hr.1", "svc.x")
    finally:
        holder.release()
    await log.__aexit__(None, None, None)  # closes on a worker thread: the loop stays free
    with pytest.raises(ClosedError):
        log.record_off_loop("read", "hr.2", outcome="denied")
    with AuditLog(str(audit_path), read_only=True) as reader:
        assert [e.target for e in reader.entries()] == ["hr.1"]


async def test_a_queued_denial_the_file_refuses_is_logged(
    audit_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with AuditLog(str(audit_path), busy_timeout=0.2) as log:
        acl = AccessControl(default="deny", audit=log)
        holder = Holder(audit_path)
        try:
            with pytest.raises(AccessDenied):
                acl.check("read", "hr.1", "svc.x")
            with caplog.at_level(logging.ERROR, logger="pepperpy.event.security"):
                # entries() waits for the queue: the writer gives up after busy_timeout
                assert await asyncio.to_thread(log.entries) == []
        finally:
            holder.release()
    [record] = [r for r in caplog.records if "could not record" in r.getMessage()]
    assert "'hr.1'" in record.getMessage() and "svc.x" in record.getMessage()
