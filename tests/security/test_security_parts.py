"""Encryption, access control and the audit log on their own."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from pepperpy.event import AccessDenied, ConfigurationError, EncryptionError, StoreError
from pepperpy.event.security import (
    AccessControl,
    AuditLog,
    KeyRing,
    MemoryKeyStore,
    SQLiteKeyStore,
    StreamEncryption,
    acting_as,
    current_principal,
)

# -- encryption ---------------------------------------------------------------------------


async def test_round_trip_binds_ciphertext_to_stream_and_event() -> None:
    crypto = StreamEncryption(KeyRing.generate())
    envelope = await crypto.encrypt("user.1", "id-1", b'{"ssn":"123"}')
    assert StreamEncryption.is_encrypted(envelope)
    assert b"123" not in str(envelope).encode()
    assert await crypto.decrypt("user.1", "id-1", envelope) == b'{"ssn":"123"}'
    with pytest.raises(EncryptionError, match="tampered or moved"):
        await crypto.decrypt("user.1", "id-2", envelope)  # moved to another event
    other = await crypto.encrypt("user.2", "id-1", b"x")
    with pytest.raises(EncryptionError):
        await crypto.decrypt("user.2", "id-1", {**other, "blob": envelope["blob"]})


async def test_each_stream_has_its_own_key_and_shredding_makes_it_unreadable() -> None:
    keys = MemoryKeyStore()
    crypto = StreamEncryption(KeyRing.generate(), keys, on_shredded="error")
    a = await crypto.encrypt("user.1", "e1", b"alice")
    b = await crypto.encrypt("user.2", "e2", b"bob")
    assert await keys.streams() == ["user.1", "user.2"]
    assert await crypto.shred("user.1") is True
    with pytest.raises(EncryptionError, match="shredded"):
        await crypto.decrypt("user.1", "e1", a)
    assert await crypto.decrypt("user.2", "e2", b) == b"bob"
    # a fresh process with the same key store cannot read it either
    again = StreamEncryption(crypto.keyring, keys, on_shredded="redact")
    assert await again.decrypt("user.1", "e1", a) is None


async def test_master_key_rotation_rewraps_data_keys(tmp_path: Path) -> None:
    ring = KeyRing({"old": os.urandom(32)})
    store = SQLiteKeyStore(str(tmp_path / "keys.db"))
    crypto = StreamEncryption(ring, store)
    envelope = await crypto.encrypt("orders.9", "e1", b"secret")
    ring.add("new", os.urandom(32), primary=True)
    assert await crypto.rotate() == 1
    with closing(sqlite3.connect(tmp_path / "keys.db")) as raw:
        rows = raw.execute("SELECT master_key FROM data_keys").fetchall()
    assert [r[0] for r in rows] == ["new"]
    only_new = KeyRing({"new": ring.key("new")})
    fresh = StreamEncryption(only_new, store)
    assert await fresh.decrypt("orders.9", "e1", envelope) == b"secret"
    await store.close()


async def test_stream_key_rotation_keeps_old_events_readable() -> None:
    crypto = StreamEncryption(KeyRing.generate())
    first = await crypto.encrypt("s.1", "e1", b"one")
    assert await crypto.rotate_stream("s.1") == 2
    second = await crypto.encrypt("s.1", "e2", b"two")
    assert (first["key"], second["key"]) == (1, 2)
    assert await crypto.decrypt("s.1", "e1", first) == b"one"
    assert await crypto.decrypt("s.1", "e2", second) == b"two"


def test_key_ring_refuses_bad_keys() -> None:
    with pytest.raises(ConfigurationError, match="32 bytes"):
        KeyRing({"k": b"short"})
    with pytest.raises(ConfigurationError, match="primary"):
        KeyRing({"k": os.urandom(32)}, primary="other")
    with pytest.raises(EncryptionError, match="no master key"):
        KeyRing().primary_key()


async def test_concurrent_first_writes_agree_on_one_data_key() -> None:
    keys = MemoryKeyStore()
    ring = KeyRing.generate()
    writers = [StreamEncryption(ring, keys) for _ in range(5)]
    envelopes = await asyncio.gather(
        *(w.encrypt("s.x", f"e{i}", b"v") for i, w in enumerate(writers))
    )
    reader = StreamEncryption(ring, keys)
    for i, envelope in enumerate(envelopes):
        assert await reader.decrypt("s.x", f"e{i}", envelope) == b"v"


# -- access control -----------------------------------------------------------------------


def test_rules_over_patterns_with_deny_winning() -> None:
    audit = AuditLog()
    acl = AccessControl(audit=audit)
    acl.allow("svc.*", "publish", "orders.#")
    acl.allow("#", "read", "#")
    acl.deny("svc.mailer", "publish", "orders.refund.#")
    acl.check("publish", "orders.created", principal="svc.billing")
    acl.check("publish", "orders.created", principal="svc.mailer")
    with pytest.raises(AccessDenied) as denied:
        acl.check("publish", "orders.refund.issued", principal="svc.mailer")
    assert denied.value.principal == "svc.mailer"
    assert "orders.refund.issued" in str(denied.value)
    with pytest.raises(AccessDenied):
        acl.check("publish", "users.created", principal="svc.billing")
    with pytest.raises(AccessDenied):
        acl.check("append", "orders.created")  # anonymous: default deny
    outcomes = [(e.action, e.outcome) for e in audit.entries()]
    assert outcomes.count(("rule.add", "ok")) == 3
    assert outcomes[-3:] == [("publish", "denied"), ("publish", "denied"), ("append", "denied")]


def test_subscription_patterns_must_be_fully_covered() -> None:
    acl = AccessControl()
    acl.allow("#", "subscribe", "orders.#")
    acl.check("subscribe", "orders.*", principal="u")
    acl.check("subscribe", "orders.#", principal="u")
    with pytest.raises(AccessDenied):
        acl.check("subscribe", "#", principal="u")  # would also see users.*
    with pytest.raises(AccessDenied):
        acl.check("subscribe", "*.created", principal="u")


def test_principal_follows_the_context_into_tasks() -> None:
    acl = AccessControl(default="deny")
    acl.allow("alice", "append", "notes.#")

    async def body() -> None:
        assert current_principal() is None
        with acting_as("alice"):
            await asyncio.create_task(asyncio.sleep(0))
            acl.check("append", "notes.1")

            async def child() -> str | None:
                return current_principal()

            assert await asyncio.create_task(child()) == "alice"
        with pytest.raises(AccessDenied):
            acl.check("append", "notes.1")

    asyncio.run(body())


def test_bad_rules_are_refused() -> None:
    acl = AccessControl()
    with pytest.raises(ConfigurationError, match="unknown action"):
        acl.allow("#", "fly", "#")
    with pytest.raises(ValueError):
        acl.allow("#", "read", "a..b")
    with pytest.raises(ConfigurationError):
        AccessControl(default="maybe")  # type: ignore[arg-type]


# -- audit --------------------------------------------------------------------------------


@pytest.mark.parametrize("key", [None, b"0123456789abcdef-secret"])
def test_audit_chain_detects_tampering(tmp_path: Path, key: bytes | None) -> None:
    path = str(tmp_path / "audit.db")
    log = AuditLog(path, key=key)
    for n in range(5):
        log.record("append", f"orders.{n}", principal="svc", details={"n": n})
    assert log.verify().ok and log.verify().checked == 5
    log.close()
    db = sqlite3.connect(path)
    body = db.execute("SELECT body FROM audit_log WHERE sequence = 2").fetchone()[0]
    db.execute(
        "UPDATE audit_log SET body = ? WHERE sequence = 2", (body.replace(b'"n":2', b'"n":7'),)
    )
    db.commit()
    db.close()
    reopened = AuditLog(path, key=key)
    result = reopened.verify()
    assert not result.ok and result.first_bad_sequence == 2 and result.checked == 2
    reopened.close()


def test_audit_detects_a_removed_entry() -> None:
    log = AuditLog()
    for n in range(3):
        log.record("delete", f"s.{n}")
    del log._entries[1]
    result = log.verify()
    assert not result.ok and result.first_bad_sequence == 2


def test_audit_key_must_be_long_enough() -> None:
    with pytest.raises(ConfigurationError):
        AuditLog(key=b"short")


# -- enforcement by the bus ---------------------------------------------------------------


async def test_bus_enforces_publish_and_subscribe_rules() -> None:
    from pepperpy.event import EventBus

    audit = AuditLog()
    acl = AccessControl(audit=audit)
    acl.allow("svc.orders", "publish", "orders.#")
    acl.allow("svc.*", "subscribe", "orders.*")
    bus = EventBus(access=acl)
    seen: list[str] = []
    with acting_as("svc.shipping"):
        bus.subscribe("orders.*")(lambda event: seen.append(event.type))
        with pytest.raises(AccessDenied):
            bus.subscribe("#")
    with acting_as("svc.orders"):
        await bus.publish("orders.created", {"id": 1})
    with acting_as("svc.shipping"), pytest.raises(AccessDenied):
        await bus.publish("orders.created", {"id": 2})
    assert seen == ["orders.created"]
    assert [e.outcome for e in audit.entries()][-2:] == ["denied", "denied"]
    await bus.close()


def test_audit_read_only_never_creates_or_changes_a_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        AuditLog(str(tmp_path / "missing.db"), read_only=True)
    assert not (tmp_path / "missing.db").exists()
    other = tmp_path / "other.db"
    db = sqlite3.connect(other)
    db.execute("CREATE TABLE events (id TEXT)")
    db.commit()
    db.close()
    before = other.read_bytes()
    with pytest.raises(ConfigurationError, match="not an audit log"):
        AuditLog(str(other), read_only=True)
    assert other.read_bytes() == before
    path = str(tmp_path / "audit.db")
    AuditLog(path).close()
    readonly = AuditLog(path, read_only=True)
    assert readonly.verify().ok
    with pytest.raises(ConfigurationError, match="read-only"):
        readonly.record("append", "s.1")
    with pytest.raises(ConfigurationError, match="read-only"):  # refused as record() is
        readonly.record_off_loop("append", "s.1")
    readonly.close()


GENESIS = "0" * 64  # the head of an empty audit log


@pytest.mark.parametrize("file_backed", [False, True])
def test_audit_verify_against_a_recorded_head(tmp_path: Path, file_backed: bool) -> None:
    log = AuditLog(str(tmp_path / "audit.db") if file_backed else None)
    empty = log.verify()
    assert empty.ok and (empty.checked, empty.head) == (0, GENESIS)
    for n in range(3):
        log.record("append", f"s.{n}")
    anchor = log.verify()
    assert anchor.ok and anchor.checked == 3 and anchor.head == log.entries()[-1].hash
    assert log.verify(expect_count=0, expect_head=GENESIS).ok  # an older, empty anchor
    log.record("append", "s.3")
    assert log.verify(expect_count=anchor.checked, expect_head=anchor.head.upper()).ok
    assert not log.verify(expect_count=2, expect_head=anchor.head).ok  # inconsistent anchor

    def truncate(keep: int) -> None:
        if log._db is not None:
            log._db.execute("DELETE FROM audit_log WHERE sequence >= ?", (keep,))
        else:
            del log._entries[keep:]

    truncate(2)
    assert log.verify().ok  # the chain alone cannot tell
    short = log.verify(expect_count=3)
    assert not short.ok and (short.checked, short.first_bad_sequence) == (2, 2)
    assert short.reason == "1 of the 3 expected entries are missing"
    gone = log.verify(expect_head=anchor.head)
    assert not gone.ok and gone.reason == "the expected head hash is not in the log"
    truncate(0)
    assert not log.verify(expect_count=3, expect_head=anchor.head).ok
    with pytest.raises(ConfigurationError):
        log.verify(expect_count=-1)
    with pytest.raises(ConfigurationError):
        log.verify(expect_head="not hex")
    log.close()


# -- verify reports any edited row as tampering, never raises --------------------------------

TAMPERED_ROWS = {
    "non-ascii hash": "UPDATE audit_log SET hash = 'é' || substr(hash, 2)",
    "upper-case hash": "UPDATE audit_log SET hash = upper(hash)",
    "hash stored as blob": "UPDATE audit_log SET hash = CAST(hash AS BLOB)",
    "hash stored as int": "UPDATE audit_log SET hash = 42",
    "body stored as text": "UPDATE audit_log SET body = CAST(body AS TEXT)",
    "body stored as int": "UPDATE audit_log SET body = 7",
    "body not json": "UPDATE audit_log SET body = x'00ff'",
    "body a json list": "UPDATE audit_log SET body = CAST('[1, 2]' AS BLOB)",
    "details not an object": "UPDATE audit_log SET body = CAST(json_set(CAST(body AS TEXT),"
    " '$.details', 'xy') AS BLOB)",
    "a field added": "UPDATE audit_log SET body = CAST(json_set(CAST(body AS TEXT),"
    " '$.note', 'hidden') AS BLOB)",
    "a field removed": "UPDATE audit_log SET body = CAST(json_remove(CAST(body AS TEXT),"
    " '$.outcome') AS BLOB)",
    "sequence as text": "UPDATE audit_log SET body = CAST(json_set(CAST(body AS TEXT),"
    " '$.sequence', '1') AS BLOB)",
    "time not a timestamp": "UPDATE audit_log SET body = CAST(json_set(CAST(body AS TEXT),"
    " '$.at', 'yesterday') AS BLOB)",
    "time a number": "UPDATE audit_log SET body = CAST(json_set(CAST(body AS TEXT),"
    " '$.at', 5) AS BLOB)",
    "principal a number": "UPDATE audit_log SET body = CAST(json_set(CAST(body AS TEXT),"
    " '$.principal', 5) AS BLOB)",
    "link not hex": "UPDATE audit_log SET body = CAST(json_set(CAST(body AS TEXT),"
    " '$.previous_hash', 'zz') AS BLOB)",
}


def _tampered_log(tmp_path: Path, sql: str, key: bytes | None = None) -> str:
    path = str(tmp_path / "audit.db")
    with AuditLog(path, key=key) as log:
        for n in range(3):
            log.record("append", f"orders.{n}", principal="svc", details={"n": n})
    with closing(sqlite3.connect(path)) as db, db:
        db.execute(f"{sql} WHERE sequence = 1")
    return path


@pytest.mark.parametrize("sql", list(TAMPERED_ROWS.values()), ids=list(TAMPERED_ROWS))
@pytest.mark.parametrize("key", [None, b"0123456789abcdef-secret"], ids=["sha256", "hmac"])
def test_verify_reports_a_malformed_row_as_tampering(
    tmp_path: Path, sql: str, key: bytes | None
) -> None:
    path = _tampered_log(tmp_path, sql, key)
    log = AuditLog(path, key=key, read_only=True)
    result = log.verify()
    assert not result.ok
    assert (result.checked, result.first_bad_sequence) == (1, 1)
    assert result.reason and result.head == log.verify().head
    with pytest.raises(StoreError, match="entry 1 of the audit log .* is malformed"):
        log.entries()
    log.close()


@pytest.mark.parametrize("case", ["non-ascii hash", "details not an object"])
def test_the_cli_reports_a_malformed_row_in_one_line(
    tmp_path: Path, case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from pepperpy.event.cli import main

    path = _tampered_log(tmp_path, TAMPERED_ROWS[case])
    for command in ("verify", "show"):
        with pytest.raises(SystemExit) as exit_status:
            main(["audit", command, path])
        assert exit_status.value.code == 1
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
        assert "unexpected" not in err and "entry 1" in err
    with pytest.raises(SystemExit):
        main(["audit", "verify", path])
    assert "NOT intact: entry 1: malformed row" in capsys.readouterr().err


def test_verify_reports_a_row_moved_to_another_sequence(tmp_path: Path) -> None:
    path = _tampered_log(tmp_path, "UPDATE audit_log SET sequence = 1")  # a no-op edit
    with (
        closing(sqlite3.connect(path)) as db,
        db,
    ):  # the newest row moved on: the order is unchanged
        db.execute("UPDATE audit_log SET sequence = 12 WHERE sequence = 2")
    with AuditLog(path, read_only=True) as log:
        result = log.verify()
    assert not result.ok and (result.checked, result.first_bad_sequence) == (2, 2)
    assert result.reason == "entry is stored under sequence 12"


def test_verify_reports_a_damaged_file(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    with AuditLog(str(path)) as log:
        for n in range(200):
            log.record("append", f"orders.{n}", details={"padding": "x" * 200})
    data = bytearray(path.read_bytes())
    page = 4096
    data[2 * page : 3 * page] = b"\xff" * page  # a page of the table, not the schema
    path.write_bytes(bytes(data))
    with AuditLog(str(path), read_only=True) as damaged:
        result = damaged.verify()
    assert not result.ok and result.reason is not None
    assert result.reason.startswith("the file is damaged")


def test_a_record_after_a_tampered_head_still_links_and_verify_names_the_row(
    tmp_path: Path,
) -> None:
    path = _tampered_log(tmp_path, "UPDATE audit_log SET sequence = 1")  # a no-op edit
    with closing(sqlite3.connect(path)) as db, db:  # the newest row's hash replaced by garbage
        db.execute("UPDATE audit_log SET hash = CAST('garbage' AS BLOB) WHERE sequence = 2")
    with AuditLog(path) as log:
        entry = log.record("append", "orders.3")  # neither raises nor hides the edit
        result = log.verify()
    assert entry.sequence == 3
    assert not result.ok and (result.checked, result.first_bad_sequence) == (2, 2)
