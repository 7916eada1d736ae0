"""Configuring access control: the default policy, principal names, where keys live."""

from __future__ import annotations

import pytest

from pepperpy.event import ClosedError, ConfigurationError
from pepperpy.event.security import AccessControl, AuditLog, acting_as

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
