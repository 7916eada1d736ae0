"""Revoking a right stops the readers and subscriptions already open under it."""

from __future__ import annotations

from pathlib import Path

import pytest

from pepperpy.event import AccessDenied, EventStore
from pepperpy.event.security import AccessControl, AuditLog, acting_as

ORDER = {"type": "order.created", "data": {"card": "4111..."}}


@pytest.fixture(params=["memory", "sqlite"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'events.db'}"


def denials(log: AuditLog) -> list[tuple[str | None, str, str]]:
    return [(e.principal, e.action, e.target) for e in log.entries() if e.outcome == "denied"]


async def test_a_deny_added_stops_an_open_subscription(url: str) -> None:
    log = AuditLog()
    acl = AccessControl(default="deny")
    acl.allow("#", "append", "#")
    acl.allow("svc.reporting", "read", "orders.#")
    async with EventStore(url, access=acl, audit=log) as store:
        await store.append("orders.1", ORDER)
        with acting_as("svc.reporting"):
            subscription = store.subscribe(streams="orders.#")
        first = await anext(subscription)  # iterated outside acting_as: still its reader
        assert first.stream == "orders.1"
        acl.deny("svc.reporting", "read", "orders.#")
        await store.append("orders.2", ORDER)
        with pytest.raises(AccessDenied, match="svc.reporting"):
            await anext(subscription)
        with pytest.raises(AccessDenied):  # and stays refused: nothing skipped, nothing read
            await anext(subscription)
        await subscription.aclose()
    assert denials(log)[0] == ("svc.reporting", "read", "orders.#")


async def test_an_allow_removed_stops_a_reader_made_before(url: str) -> None:
    log = AuditLog()
    acl = AccessControl(default="deny", audit=log)  # the store records into it too
    acl.allow("#", "append", "#")
    rule = acl.allow("svc.reporting", "read", "orders.#")
    async with EventStore(url, access=acl, audit=log) as store:
        await store.append("orders.1", ORDER)
        with acting_as("svc.reporting"):
            stream = store.get_stream("orders.1")
            everything = store.read_all(streams="orders.#")
            assert len(await stream) == 1
        acl.remove(rule)
        with pytest.raises(AccessDenied):
            await stream
        with pytest.raises(AccessDenied):
            await everything
    assert denials(log) == [
        ("svc.reporting", "read", "orders.1"),
        ("svc.reporting", "read", "orders.#"),
    ]


async def test_a_default_turned_to_deny_stops_an_open_reader(url: str) -> None:
    acl = AccessControl(default="allow")
    async with EventStore(url, access=acl) as store:
        await store.append("orders.1", ORDER)
        reader = store.get_stream("orders.1")
        assert len(await reader) == 1
        acl.default = "deny"
        with pytest.raises(AccessDenied):
            await reader


async def test_a_change_that_keeps_the_right_keeps_the_subscription(url: str) -> None:
    acl = AccessControl(default="deny")
    acl.allow("#", "append", "#")
    acl.allow("svc.reporting", "read", "orders.#")
    async with EventStore(url, access=acl) as store:
        await store.append("orders.1", ORDER)
        with acting_as("svc.reporting"):
            subscription = store.subscribe(streams="orders.#")
        assert (await anext(subscription)).stream == "orders.1"
        acl.deny("svc.intern", "read", "#")  # someone else's rights: checked again, allowed
        acl.allow("svc.billing", "read", "orders.#")
        await store.append("orders.2", ORDER)
        assert (await anext(subscription)).stream == "orders.2"
        await subscription.aclose()
