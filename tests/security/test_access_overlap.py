"""A deny rule refuses every pattern that overlaps it: no broader pattern gets around it."""

from __future__ import annotations

import pytest

from pepperpy.event import AccessDenied, EventBus, EventStore
from pepperpy.event.security import AccessControl, AuditLog, acting_as


def mailer_rules() -> AccessControl:
    acl = AccessControl(default="deny")
    acl.allow("#", "subscribe", "orders.#")
    acl.deny("svc.mailer", "subscribe", "orders.refund.#")
    return acl


@pytest.mark.parametrize(
    "pattern", ["orders.#", "orders.*.issued", "orders.refund.#", "orders.refund.issued"]
)
def test_a_pattern_overlapping_a_deny_rule_is_refused(pattern: str) -> None:
    acl = mailer_rules()
    assert not acl.is_allowed("svc.mailer", "subscribe", pattern)
    with pytest.raises(AccessDenied, match=r"refused by deny\('svc.mailer'"):
        acl.check("subscribe", pattern, principal="svc.mailer")


@pytest.mark.parametrize("pattern", ["orders.created", "orders.payment.*", "orders.payment.#"])
def test_patterns_clear_of_the_deny_rule_stay_allowed(pattern: str) -> None:
    acl = mailer_rules()
    acl.check("subscribe", pattern, principal="svc.mailer")
    acl.check("subscribe", "orders.#", principal="svc.billing")  # the rule names the mailer


def test_the_audit_entry_names_the_deny_rule() -> None:
    audit = AuditLog()
    acl = AccessControl(default="allow", audit=audit)
    acl.deny("svc.reporting", "read", "hr.#")
    with pytest.raises(AccessDenied):
        acl.check("read", "#", principal="svc.reporting")
    last = audit.entries()[-1]
    assert (last.outcome, last.target) == ("denied", "#")
    assert last.details["rule"] == "deny('svc.reporting', 'read', 'hr.#')"


async def test_the_bus_refuses_a_broad_subscription_that_overlaps_a_deny() -> None:
    acl = mailer_rules()
    bus = EventBus(access=acl)
    with acting_as("svc.mailer"), pytest.raises(AccessDenied):
        bus.subscribe("orders.#")(lambda event: None)


async def test_the_store_refuses_reads_that_overlap_a_deny() -> None:
    acl = AccessControl(default="deny")
    acl.allow("#", "read", "#")
    acl.allow("#", "append", "#")
    acl.deny("svc.reporting", "read", "hr.#")
    async with EventStore(access=acl) as store:
        with acting_as("admin"):
            await store.append("hr.salaries", {"type": "salary.set", "data": {"ann": 250000}})
            await store.append("sales.q1", {"type": "sale", "data": {"total": 7}})
        with acting_as("svc.reporting"):
            with pytest.raises(AccessDenied):
                await store.read_all()
            with pytest.raises(AccessDenied):
                store.subscribe(streams="*.salaries")
            with pytest.raises(AccessDenied):
                await store.streams()
            events = await store.read_all(streams="sales.#")
            assert [e.stream for e in events] == ["sales.q1"]
