"""Where rule changes are recorded: in the AccessControl's own audit log only.

docs/security.md says so: a store's ``audit=`` records the store's denials but not the
rule changes of its ``access=``; giving the AccessControl the store's log records both,
each denial once. This holds the documentation to it.
"""

from __future__ import annotations

import pytest

from pepperpy.event import AccessDenied, EventStore
from pepperpy.event.security import AccessControl, AuditLog, acting_as


async def test_a_store_log_does_not_record_rule_changes_of_an_unaudited_acl() -> None:
    log = AuditLog()
    acl = AccessControl(default="allow")
    async with EventStore("memory://", access=acl, audit=log):
        acl.deny("svc.x", "read", "#")
        acl.default = "deny"
    assert log.entries() == []


async def test_an_acl_given_the_store_log_records_rule_changes_and_each_denial_once() -> None:
    log = AuditLog()
    acl = AccessControl(default="allow", audit=log)
    async with EventStore("memory://", access=acl, audit=log) as store:
        acl.deny("svc.x", "read", "#")
        with acting_as("svc.x"), pytest.raises(AccessDenied):
            await store.stream_version("orders.1")
    assert [(entry.action, entry.outcome) for entry in log.entries()] == [
        ("rule.add", "ok"),
        ("read", "denied"),
    ]
    assert log.verify().ok
