"""NATS: a subscription made while the connection is down waits for it, at most
``connect_timeout``, then says the connection is down.

It went on into nats-py, whose flush and JetStream requests each timed out in turn:
``subscribe()`` raised ``TransportError: cannot subscribe 'orders.*' ...: nats: timeout``
after about 30 s, saying nothing of the outage. Now it waits for the reconnection (as
on RabbitMQ) and, if none comes within ``connect_timeout``, raises naming the outage
(docs/transport-nats.md, "Connection loss").

The subscriber's connection goes through the fault proxy (``proxy`` and
``through_proxy`` of ``tests/bus/conftest.py``); its stream is the test's own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from pepperpy.event import Event, TransportError
from pepperpy.event.transports.base import Subscription
from pepperpy.event.transports.nats import NatsTransport
from tests.bus.faultproxy import FaultProxy, finishes
from tests.helpers import eventually

pytestmark = pytest.mark.nats


@pytest.mark.parametrize("group", [None, "billing"])
async def test_a_subscription_during_a_long_outage_says_the_connection_is_down(
    proxy: FaultProxy, through_proxy: Callable[..., NatsTransport], group: str | None
) -> None:
    transport = through_proxy(partitions=1, connect_timeout=1.0)

    async def handle(event: Event) -> None:
        pass

    await transport.start()
    try:
        proxy.refuse()
        proxy.drop()
        await eventually(lambda: transport.outage() is not None)
        with pytest.raises(TransportError) as refused:
            await finishes(transport.subscribe(Subscription("orders.*", handle, group, "s1")), 60)
        message = str(refused.value)
        assert "cannot subscribe 'orders.*'" in message
        assert "not connected to NATS" in message
        assert "connect_timeout" in message
        assert not transport._consumers
    finally:
        await transport.close()


async def test_a_subscription_during_a_short_outage_waits_for_the_connection(
    proxy: FaultProxy,
    through_proxy: Callable[..., NatsTransport],
    names: dict[str, str],
    nats_url: str,
) -> None:
    transport = through_proxy(partitions=1, connect_timeout=20.0)
    seen: list[Any] = []

    async def handle(event: Event) -> None:
        seen.append(event.data)

    publisher = NatsTransport(nats_url, partitions=1, **names)
    await transport.start()
    await publisher.start()
    try:
        proxy.refuse()
        proxy.drop()
        await eventually(lambda: transport.outage() is not None)
        asyncio.get_running_loop().call_later(1.0, proxy.heal)
        await finishes(transport.subscribe(Subscription("orders.*", handle, "billing", "s1")), 60)
        await publisher.publish(Event(type="orders.placed", source="test", data=1))
        await eventually(lambda: seen == [1])
    finally:
        await publisher.close()
        await transport.close()


async def test_a_subscription_while_a_closed_client_is_replaced_waits_for_the_new_one(
    names: dict[str, str], nats_url: str
) -> None:
    """The server closed the client for good (-ERR); the transport connects a new one.
    A subscription made meanwhile failed at once ("cannot subscribe 'orders.*' now: the
    NATS server closed the connection ...; reconnecting"); it now waits for the new
    client, as for a reconnect, and gets the events."""
    seen: list[Any] = []

    async def handle(event: Event) -> None:
        seen.append(event.data)

    async with FaultProxy(4222) as proxy:
        transport = NatsTransport(
            f"nats://127.0.0.1:{proxy.port}",
            partitions=1,
            reconnect_wait=0.2,
            connect_timeout=20.0,
            **names,
        )
        publisher = NatsTransport(nats_url, partitions=1, **names)
        await transport.start()
        await publisher.start()
        try:
            closed = transport._nc
            assert closed is not None
            proxy.refuse()  # the new client gets through only once healed
            await closed.publish("x." + "a" * 5000, b"")  # over max_control_line: -ERR
            await eventually(lambda: closed.is_closed)
            asyncio.get_running_loop().call_later(1.0, proxy.heal)
            await finishes(
                transport.subscribe(Subscription("orders.*", handle, "billing", "s1")), 30
            )
            assert transport._nc is not closed
            await publisher.publish(Event(type="orders.placed", source="test", data=1))
            await eventually(lambda: seen == [1])
        finally:
            await publisher.close()
            await transport.close()
