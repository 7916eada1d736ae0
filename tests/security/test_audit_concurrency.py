"""Several writers on one audit log file: threads, logs, stores and processes take turns.

Each ``record`` reads the head and appends after it in one write transaction, so no
entry is lost, the chain stays one line, and a file that stays locked too long gives the
library's own error naming the entry that was not recorded.
"""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import subprocess
import sys
import textwrap
import threading
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pepperpy.event import ConfigurationError, EventStore, SerializationError, StoreError
from pepperpy.event.security import AuditEntry, AuditLog, acting_as


def _forge_next(db: sqlite3.Connection, target: str) -> str:
    """Append a valid entry through ``db`` (already holding the write lock); its hash."""
    sequence, previous = db.execute(
        "SELECT sequence, hash FROM audit_log ORDER BY sequence DESC LIMIT 1"
    ).fetchone()
    entry = AuditEntry(
        sequence + 1, datetime.now(UTC), "svc.a", "append", target, "ok", {}, previous
    )
    body = entry.body()
    digest = hashlib.sha256(previous.encode() + body).hexdigest()
    db.execute(
        "INSERT INTO audit_log (sequence, body, hash) VALUES (?, ?, ?)",
        (entry.sequence, body, digest),
    )
    return digest


def test_a_record_waits_for_another_writer_instead_of_colliding(tmp_path: Path) -> None:
    """The audit's interleaving: B reads the head, A appends, B appends after the old head."""
    path = tmp_path / "audit.db"
    log = AuditLog(str(path))
    log.record("append", "orders.0")
    other = sqlite3.connect(path, isolation_level=None, timeout=10)
    other.execute("BEGIN IMMEDIATE")  # another process is appending right now
    outcome: list[object] = []
    thread = threading.Thread(
        target=lambda: outcome.append(_try(lambda: log.record("append", "orders.b")))
    )
    thread.start()
    thread.join(0.3)  # the record has started and is waiting for the lock
    forged = _forge_next(other, "orders.a")
    other.execute("COMMIT")
    thread.join(10)
    other.close()
    assert not thread.is_alive()
    entry = outcome[0]
    assert isinstance(entry, AuditEntry), entry
    assert (entry.sequence, entry.previous_hash) == (2, forged)
    assert [e.target for e in log.entries()] == ["orders.0", "orders.a", "orders.b"]
    assert log.verify().ok
    log.close()


def _try(call: Callable[[], object]) -> object:
    try:
        return call()
    except Exception as exc:
        return exc


def test_a_lock_held_too_long_is_a_store_error_naming_the_entry(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    log = AuditLog(str(path), busy_timeout=0.2)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    with pytest.raises(StoreError, match=r"could not record 'delete' 'orders.9' in the audit log"):
        log.record("delete", "orders.9")
    other.execute("ROLLBACK")
    other.close()
    log.record("append", "orders.10")  # the log is usable again: nothing left half done
    assert [e.target for e in log.entries()] == ["orders.10"]
    assert log.verify().ok
    log.close()


@pytest.mark.parametrize("shared", [True, False], ids=["one-log", "one-log-per-thread"])
def test_threads_never_lose_an_entry(tmp_path: Path, shared: bool) -> None:
    path = str(tmp_path / "audit.db")
    logs = [AuditLog(path) for _ in range(1 if shared else 4)]
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        log = logs[n % len(logs)]
        for i in range(100):
            try:
                log.record("append", f"w{n}.{i}")
            except BaseException as exc:  # pragma: no cover - what the test is for
                errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    entries = logs[0].entries()
    assert len(entries) == 400
    assert Counter(e.target for e in entries) == {
        f"w{n}.{i}": 1 for n in range(4) for i in range(100)
    }
    assert logs[-1].verify().ok and logs[-1].verify().checked == 400
    for log in logs:
        log.close()


WRITER = textwrap.dedent(
    """
    import sys, time
    from pepperpy.event.security import AuditLog

    path, name, count, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    log = AuditLog(path)
    deadline = time.monotonic() + 30
    while not __import__("os").path.exists(go) and time.monotonic() < deadline:
        time.sleep(0.005)
    for i in range(count):
        log.record("append", f"{name}.{i}", principal=name)
    log.close()
    """
)


def test_two_processes_writing_one_file_never_lose_an_entry(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    AuditLog(str(path)).close()
    go = tmp_path / "go"
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), name, "150", str(go)],
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("proc.a", "proc.b")
    ]
    go.touch()  # both start recording at once
    for writer in writers:
        _, stderr = writer.communicate(timeout=90)
        assert writer.returncode == 0, stderr
    with AuditLog(str(path), read_only=True) as log:
        entries = log.entries()
        result = log.verify()
    assert result.ok and result.checked == 300
    assert sorted(e.target for e in entries) == sorted(
        f"{name}.{i}" for name in ("proc.a", "proc.b") for i in range(150)
    )
    assert [e.sequence for e in entries] == list(range(300))


async def test_two_stores_sharing_an_audit_file_audit_every_append(tmp_path: Path) -> None:
    audit_path = str(tmp_path / "audit.db")
    first, second = AuditLog(audit_path), AuditLog(audit_path)
    async with (
        EventStore(f"sqlite:///{tmp_path}/a.db", audit=first) as store_a,
        EventStore(f"sqlite:///{tmp_path}/b.db", audit=second) as store_b,
    ):

        async def append(store: EventStore, stream: str) -> None:
            with acting_as("svc.orders"):
                for n in range(30):
                    await store.append(stream, {"type": "order.created", "data": {"n": n}})

        await asyncio.gather(append(store_a, "orders.a"), append(store_b, "orders.b"))
    appended = Counter(e.target for e in first.entries() if e.action == "append")
    assert appended == {"orders.a": 30, "orders.b": 30}
    assert second.verify().ok
    first.close()
    second.close()


# -- bad input ------------------------------------------------------------------------------


def test_bad_entries_are_refused_before_anything_is_written(tmp_path: Path) -> None:
    log = AuditLog(str(tmp_path / "audit.db"))
    with pytest.raises(TypeError, match="details must be a mapping"):
        log.record("append", "s.1", details=["not", "a", "mapping"])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="action must be a str"):
        log.record(7, "s.1")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="principal must be a str or None"):
        log.record("append", "s.1", principal=b"svc")  # type: ignore[arg-type]
    with pytest.raises(SerializationError, match="JSON-able"):
        log.record("append", "s.1", details={1: "non-str key"})  # type: ignore[dict-item]
    with pytest.raises(SerializationError, match="JSON-able"):
        log.record("append", "s.1", details={"big": 2**70})
    assert log.entries() == [] and log.verify().ok
    log.record("append", "s.1")  # no transaction was left open
    assert log.verify().checked == 1
    log.close()


@pytest.mark.parametrize(
    ("timeout", "error"),
    [
        (0, ConfigurationError),
        (-1, ConfigurationError),
        (float("nan"), ConfigurationError),
        ("5", TypeError),  # no number: a wrong type
        (True, TypeError),
    ],
)
def test_busy_timeout_must_be_positive_seconds(
    tmp_path: Path, timeout: object, error: type[Exception]
) -> None:
    with pytest.raises(error, match="busy_timeout"):
        AuditLog(str(tmp_path / "audit.db"), busy_timeout=timeout)  # type: ignore[arg-type]


def test_an_unopenable_file_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="could not open the audit log"):
        AuditLog(str(tmp_path / "missing-dir" / "audit.db"))


def test_a_failed_record_names_a_long_target_shortened(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    log = AuditLog(str(path), busy_timeout=0.1)
    log.record("setup", "-")
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    target = "orders." + "x" * 30_000
    try:
        with pytest.raises(StoreError, match=r"could not record 'append' 'orders\.x") as caught:
            log.record("append", target)
    finally:
        other.execute("ROLLBACK")
        other.close()
        log.close()
    message = str(caught.value)
    assert "(30007 characters)" in message and len(message) < 1_000
