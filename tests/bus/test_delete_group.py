"""EventBus.delete_group: what the bus checks before it asks the transport (no broker).

That the group and its backlog go, on every transport, is in the conformance suite; what
each broker keeps of it is in ``test_<broker>_delete_group.py``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pepperpy.event import (
    AccessDenied,
    ClosedError,
    ConfigurationError,
    Event,
    EventBus,
    MemoryTransport,
    PatternError,
    RetryPolicy,
    Transport,
    TransportError,
)
from pepperpy.event.security import AccessControl, acting_as
from pepperpy.event.transports import Subscription
from pepperpy.event.transports.nats import NatsTransport
from tests.helpers import eventually


@pytest.mark.parametrize(
    ("pattern", "group", "error", "match"),
    [
        (b"orders.*", "g", TypeError, "pattern must be a str, got bytes"),
        ("orders..*", "g", PatternError, "invalid pattern 'orders..\\*'"),
        ("orders.*", None, TypeError, "group must be a non-empty str, got None"),
        ("orders.*", "", ValueError, "group must be a non-empty str, got ''"),
        ("orders.*", "bill\x00ing", ValueError, "group 'bill\\\\x00ing'"),
    ],
)
async def test_what_names_no_group_is_refused_before_anything_starts(
    pattern: Any, group: Any, error: type[Exception], match: str
) -> None:
    bus = EventBus()
    with pytest.raises(error, match=match):
        await bus.delete_group(pattern, group)
    assert not bus._started
    await bus.close()


async def test_a_pattern_the_broker_cannot_carry_is_refused_without_connecting() -> None:
    bus = EventBus(transport=NatsTransport("nats://127.0.0.1:1"))  # nothing listens there
    with pytest.raises(PatternError, match="NATS wildcard"):
        await bus.delete_group("orders.>", "billing")
    assert not bus._started
    await bus.close()


async def test_a_closed_bus_deletes_nothing() -> None:
    bus = EventBus()
    await bus.close()
    with pytest.raises(ClosedError):
        await bus.delete_group("orders.*", "billing")


async def test_a_group_outside_the_declared_topics_can_be_deleted() -> None:
    """The group may come from an earlier version of the program, whose topics differed."""
    bus = EventBus(["orders.*"])
    await bus.delete_group("billing.*", "old")
    assert bus._started
    await bus.close()


async def test_deleting_needs_delete_on_the_pattern() -> None:
    access = AccessControl(default="deny")
    access.allow("svc.billing", "subscribe", "orders.#")
    access.allow("svc.ops", "delete", "orders.#")
    bus = EventBus(access=access)
    with acting_as("svc.billing"), pytest.raises(AccessDenied, match="delete"):
        await bus.delete_group("orders.*", "billing")
    with acting_as("svc.ops"):
        await bus.delete_group("orders.*", "billing")
        with pytest.raises(AccessDenied):
            await bus.delete_group("#", "billing")  # wider than its rule
    await bus.close()


async def test_a_group_whose_last_member_is_being_removed_is_refused() -> None:
    """A handler that unsubscribes itself is removed after it returns: till then the
    transport still has it in the group."""
    bus = EventBus(retry_policy=RetryPolicy.NONE)
    refused: list[str] = []

    async def work(event: Event) -> None:
        assert await bus.unsubscribe("jobs.*", work, group="g") is True
        try:
            await bus.delete_group("jobs.*", "g")
        except ConfigurationError as exc:
            refused.append(str(exc))

    bus.subscribe("jobs.*", group="g")(work)
    await bus.publish("jobs.run", 1)
    assert len(refused) == 1 and "being unsubscribed" in refused[0]
    await eventually(lambda: not bus._registrations)
    await bus.delete_group("jobs.*", "g")  # removed: now it may go
    await bus.close()


async def test_a_transport_without_delete_group_says_so() -> None:
    class Minimal(Transport):
        distributed = False

        async def publish(self, event: Event, *, key: str | None = None) -> None:
            pass

        async def subscribe(self, subscription: Subscription) -> None:
            pass

        async def close(self) -> None:
            pass

    bus = EventBus(transport=Minimal())
    with pytest.raises(TransportError, match=r"Minimal does not implement delete_group\(\)"):
        await bus.delete_group("orders.*", "billing")
    await bus.close()


async def test_the_memory_transport_forgets_a_deleted_group_and_its_members() -> None:
    """Called on the transport itself (the bus refuses while it has a member)."""
    transport = MemoryTransport()
    got: list[Any] = []

    async def deliver(event: Event) -> None:
        got.append(event.data)

    member = Subscription("orders.*", deliver, "billing", "n1")
    other = Subscription("orders.*", deliver, "audit", "n2")
    await transport.subscribe(member)
    await transport.subscribe(other)
    await transport.publish(Event("orders.placed", 1))
    assert got == [1, 1]
    await transport.delete_group(Subscription("orders.*", deliver, "billing", "n1"))
    await transport.publish(Event("orders.placed", 2))
    await asyncio.sleep(0)
    assert got == [1, 1, 2], "the deleted group still got the event (or the other did not)"
    assert ("billing", "orders.*") not in transport._groups
    await transport.delete_group(member)  # gone already: nothing to do
    await transport.close()
