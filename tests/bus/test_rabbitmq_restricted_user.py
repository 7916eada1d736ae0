"""RabbitMQ groups under a user whose write permission covers the application's names only.

A common least-privilege setup: ``set_permissions app '.*' '^pep\\..*' '.*'``, writes
limited to the exchange and queues the application names. Members pinged the
partitions through the default exchange, which needs write permission on
``amq.default``: the first refused ping closed the group's control channel, the next
ones hit the closed channel, and the broker closed the whole connection (``CHANNEL_ERROR
- expected 'channel.open'``). With two members, each lost its connection about once a
second for as long as they ran, returning its prefetched messages each time. Pings now go
through the group's lanes exchange, which groups need write permission on anyway, on a
channel of their own.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import pytest

from pepperpy.event import Event, EventBus
from pepperpy.event.transports.rabbitmq import RabbitMQTransport
from tests.bus.credentials import rabbitmq_user, rabbitmqctl
from tests.conftest import unique_name
from tests.helpers import eventually

pytestmark = pytest.mark.rabbitmq

PARTITIONS = 12


def active(transport: RabbitMQTransport) -> set[int]:
    (group,) = transport._groups.values()
    return {i for i, c in enumerate(group.consumers) if c.known_active}


async def test_members_with_writes_limited_to_the_application(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "pepperpy.event.transports.rabbitmq")
    exchange = unique_name("pep.x")
    with rabbitmq_user("secret") as user:
        rabbitmqctl("set_permissions", "-p", "/", user, ".*", r"^pep\..*", ".*")
        url = f"amqp://{user}:secret@127.0.0.1:5672/"
        transports = [
            RabbitMQTransport(url, exchange=exchange, rebalance_interval=0.2) for _ in range(2)
        ]
        buses = [EventBus(transport=transport) for transport in transports]
        handled: dict[int, list[int]] = {0: [], 1: []}
        try:
            for index, bus in enumerate(buses):

                async def handle(event: Event, index: int = index) -> None:
                    handled[index].append(event.data)

                bus.subscribe("orders.*", handle, group="workers")
                await bus.start()

            def balanced() -> bool:
                return [len(active(t)) for t in transports] == [6, 6]

            await eventually(balanced, timeout=20)  # the pings went through
            await asyncio.sleep(2.0)  # ten rebalancing rounds
            lost = [r for r in caplog.records if "lost the connection" in r.getMessage()]
            assert lost == []
            assert not [r for r in caplog.records if "cannot ping" in r.getMessage()]
            for n in range(PARTITIONS * 2):
                await buses[0].publish("orders.created", n, key=f"customer-{n}")
            await eventually(lambda: len(handled[0]) + len(handled[1]) == PARTITIONS * 2)
            assert handled[0] and handled[1]
            assert sorted(handled[0] + handled[1]) == list(range(PARTITIONS * 2))
        finally:
            for bus in buses:
                await bus.close()
            await transports[0].delete_topology()


async def test_a_refused_ping_closes_only_its_channel(
    rabbitmq_transports: Callable[..., RabbitMQTransport], caplog: pytest.LogCaptureFixture
) -> None:
    """The broker refusing pings (here: the group's lanes exchange deleted under a running
    member, 404) is one WARNING; the connection, the control channel and later pings stay."""
    caplog.set_level(logging.INFO, "pepperpy.event.transports.rabbitmq")
    transport = rabbitmq_transports(rebalance_interval=60)
    bus = EventBus(transport=transport)
    bus.subscribe("orders.*", lambda event: None, group="workers")
    await bus.start()
    try:
        (group,) = transport._groups.values()
        control = group._control
        assert control is not None
        base, group.base = group.base, unique_name("pep.gone")  # its lanes exchange: none
        for members in (2, 3):  # refused twice: one WARNING
            assert not await group._send_pings(members, list(group.consumers))
        (warning,) = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert "cannot ping the partitions of group 'workers'" in warning.getMessage()
        assert "NOT_FOUND" in warning.getMessage()
        group.base = base
        assert await group._send_pings(4, list(group.consumers))
        assert any("pings go through again" in r.getMessage() for r in caplog.records)
        await eventually(lambda: len(active(transport)) == PARTITIONS)  # all answered
        assert transport._connected() and not control.is_closed
        assert transport.outage() is None
    finally:
        await bus.close()
