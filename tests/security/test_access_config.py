"""Configuring access control: the default policy, principal names, where keys live."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pepperpy.event import AccessDenied, ClosedError, ConfigurationError, EventStore
from pepperpy.event.security import (
    AccessControl,
    AuditLog,
    KeyRing,
    SQLiteKeyStore,
    StreamEncryption,
    acting_as,
    current_principal,
)
from pepperpy.event.security._principal import PRINCIPAL

# -- the default policy is a policy change like any rule ---------------------------------


def test_changing_the_default_is_audited_with_old_and_new_value() -> None:
    log = AuditLog()
    acl = AccessControl(default="deny", audit=log)
    assert not acl.is_allowed("svc.a", "read", "orders.1")
    with acting_as("admin"):
        acl.default = "allow"
    assert acl.default == "allow"
    assert acl.is_allowed("svc.a", "read", "orders.1")
    [entry] = log.entries()
    assert (entry.principal, entry.action, entry.outcome) == ("admin", "policy.default", "ok")
    assert dict(entry.details) == {"old": "deny", "new": "allow"}
    assert log.verify().ok


@pytest.mark.parametrize("bad", ["alow", "ALLOW", "", None, True, 1])
def test_a_default_that_is_not_allow_or_deny_is_refused_and_changes_nothing(bad: object) -> None:
    log = AuditLog()
    acl = AccessControl(default="deny", audit=log)
    with pytest.raises(ConfigurationError, match="default must be 'allow' or 'deny'"):
        acl.default = bad  # type: ignore[assignment]
    assert acl.default == "deny"
    assert not acl.is_allowed("svc.a", "read", "orders.1")
    assert log.entries() == []


def test_a_closed_audit_log_refuses_a_default_change() -> None:
    log = AuditLog()
    acl = AccessControl(default="deny", audit=log)
    log.close()
    with pytest.raises(ClosedError):
        acl.default = "allow"
    assert acl.default == "deny"
    assert not acl.is_allowed("svc.a", "read", "orders.1")


# -- a principal is a name, not a pattern ---------------------------------------------------

INVALID_PRINCIPALS = ["John Smith", "svc.*", "#", "svc..a", "svc.a\n"]


@pytest.mark.parametrize("bad", INVALID_PRINCIPALS)
def test_acting_as_refuses_a_principal_that_is_not_a_name(bad: str) -> None:
    with pytest.raises(ValueError, match="invalid principal .*dot-separated tokens"):
        with acting_as(bad):
            pass
    assert current_principal() is None


@pytest.mark.parametrize("bad", INVALID_PRINCIPALS)
def test_checking_an_invalid_principal_is_an_audited_denial(bad: str) -> None:
    log = AuditLog()
    acl = AccessControl(default="allow", audit=log)  # even where everything is allowed
    acl.allow("#", "*", "#")
    with pytest.raises(AccessDenied, match="not a valid principal name") as denied:
        acl.check("read", "orders.1", principal=bad)
    assert denied.value.principal == bad
    assert not acl.is_allowed(bad, "read", "orders.1")
    entry = log.entries()[-1]
    assert (entry.principal, entry.action, entry.target, entry.outcome) == (
        bad,
        "read",
        "orders.1",
        "denied",
    )
    assert "invalid_principal" in entry.details


async def test_a_store_records_the_denial_of_an_invalid_principal() -> None:
    log = AuditLog()
    acl = AccessControl(default="allow")
    acl.deny("svc.intern", "read", "hr.#")
    async with EventStore(access=acl, audit=log) as store:
        reset = PRINCIPAL.set("svc.*")  # set directly, as the bus does around a handler
        try:
            with pytest.raises(AccessDenied):
                await store.append("hr.1", {"type": "salary.set", "data": {}})
        finally:
            PRINCIPAL.reset(reset)
    assert [(e.principal, e.action, e.outcome) for e in log.entries()] == [
        ("svc.*", "append", "denied")
    ]


# -- the data keys never live with the events ----------------------------------------------


@pytest.mark.parametrize("spelling", ["same", "relative", "dotted", "hard link"])
async def test_a_key_store_in_the_event_database_file_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spelling: str
) -> None:
    events = tmp_path / "events.db"
    monkeypatch.chdir(tmp_path)
    keys_path = {
        "same": str(events),
        "relative": "events.db",
        "dotted": str(tmp_path / "sub" / ".." / "events.db"),
        "hard link": str(tmp_path / "link.db"),
    }[spelling]
    (tmp_path / "sub").mkdir()
    if spelling == "hard link":
        events.write_bytes(b"")
        os.link(events, keys_path)
    key_store = SQLiteKeyStore(keys_path)
    try:
        crypto = StreamEncryption(KeyRing.generate(), key_store)
        with pytest.raises(ConfigurationError, match="is the event database"):
            EventStore(f"sqlite:///{events}", encryption=crypto)
    finally:
        await key_store.close()


async def test_a_key_store_in_its_own_file_is_fine(tmp_path: Path) -> None:
    key_store = SQLiteKeyStore(str(tmp_path / "keys.db"))
    crypto = StreamEncryption(KeyRing.generate(), key_store)
    async with EventStore(f"sqlite:///{tmp_path / 'events.db'}", encryption=crypto) as store:
        await store.append("user.1", {"type": "user.created", "data": {"ssn": "078-05-1120"}})
        assert (await store.get_stream("user.1"))[0].data == {"ssn": "078-05-1120"}
    await key_store.close()
