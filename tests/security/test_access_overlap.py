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


# -- an allow rule counts only if it covers everything the requested pattern matches ------


@pytest.mark.parametrize(
    ("allowed", "requested"),
    [
        ("orders.*", "orders.#"),  # orders.# also matches orders.refund.issued
        ("orders.*", "#"),
        ("*", "#"),  # '*' is one token, '#' any number of them
        ("*.created", "#.created"),
        ("orders.*.issued", "orders.#.issued"),
    ],
)
def test_an_allow_rule_does_not_cover_a_multi_level_wildcard(allowed: str, requested: str) -> None:
    acl = AccessControl(default="deny")
    acl.allow("svc.a", "subscribe", allowed)
    assert not acl.is_allowed("svc.a", "subscribe", requested)
    with pytest.raises(AccessDenied):
        acl.check("subscribe", requested, principal="svc.a")


@pytest.mark.parametrize(
    ("allowed", "requested"),
    [
        ("orders.*", "orders.*"),
        ("orders.*", "orders.created"),
        ("orders.#", "orders.#"),
        ("orders.#", "orders.*.issued"),
        ("#", "#"),
    ],
)
def test_an_allow_rule_covers_what_fits_inside_it(allowed: str, requested: str) -> None:
    acl = AccessControl(default="deny")
    acl.allow("svc.a", "subscribe", allowed)
    acl.check("subscribe", requested, principal="svc.a")


async def test_the_bus_refuses_a_subscription_broader_than_the_allow_rule() -> None:
    acl = AccessControl(default="deny")
    acl.allow("svc.a", "subscribe", "orders.*")
    acl.allow("#", "publish", "#")
    bus = EventBus(access=acl)
    received: list[str] = []
    with acting_as("svc.a"):
        for pattern in ("orders.#", "#"):
            with pytest.raises(AccessDenied):
                bus.subscribe(pattern)(lambda event: received.append(event.type))
        bus.subscribe("orders.*")(lambda event: received.append(event.type))
    await bus.publish("orders.refund.issued", {"card": "4111"})
    await bus.publish("orders.created", {"n": 1})
    assert received == ["orders.created"]


async def test_the_store_refuses_reads_broader_than_the_allow_rule() -> None:
    acl = AccessControl(default="deny")
    acl.allow("admin", "append", "#")
    acl.allow("svc.a", "read", "orders.*")
    acl.allow("svc.b", "read", "*")
    async with EventStore(access=acl) as store:
        with acting_as("admin"):
            await store.append("orders.1", {"type": "order.placed", "data": {"n": 1}})
            await store.append("orders.refund.1", {"type": "refund.issued", "data": {"n": 2}})
        with acting_as("svc.a"):
            with pytest.raises(AccessDenied):
                await store.read_all(streams="orders.#")
            with pytest.raises(AccessDenied):
                store.subscribe(streams="orders.#")
            with pytest.raises(AccessDenied):
                await store.read_all()  # the whole log is a read of '#'
            events = await store.read_all(streams="orders.*")
            assert [e.stream for e in events] == ["orders.1"]
        with acting_as("svc.b"):  # '*' covers one-token stream names only
            with pytest.raises(AccessDenied):
                await store.read_all()
            with pytest.raises(AccessDenied):
                store.subscribe()
