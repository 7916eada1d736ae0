"""RabbitMQ groups during a rolling upgrade: members of an earlier version get no pings.

A member of a version before pings takes each one it receives for a malformed message
and logs an ERROR for it ("dropping a message ... that is not a CloudEvents JSON
document"): a few per membership change, on every old member, all through a rolling
upgrade. Members of this version now see them (``.pings`` has fewer consumers than
``.presence``; versions before ``.presence`` hold ``.members``), ping nothing while they
run, and say so once; pinging resumes once they are gone.

The older member here is what such a member does on the wire: a plain AMQP client that
holds a consumer on the presence queue of its version and is the active consumer of every
partition queue, recording whatever reaches it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import aiormq
import pytest

from pepperpy.event import Event, EventBus
from pepperpy.event.transports.rabbitmq import RabbitMQTransport
from tests.helpers import eventually

pytestmark = pytest.mark.rabbitmq

PARTITIONS = 12


async def handle(event: Event) -> None:
    pass


def active(transport: RabbitMQTransport) -> set[int]:
    (group,) = transport._groups.values()
    return {i for i, c in enumerate(group.consumers) if c.known_active}


@pytest.mark.parametrize("presence", [".presence", ".members"])
async def test_no_pings_while_older_members_run(
    rabbitmq_transports: Callable[..., RabbitMQTransport],
    amqp_url: str,
    caplog: pytest.LogCaptureFixture,
    presence: str,
) -> None:
    caplog.set_level(logging.INFO, "pepperpy.event.transports.rabbitmq")
    # the layout, made by a member that leaves again (the group's queues are durable)
    first = rabbitmq_transports(rebalance_interval=0.2)
    bus = EventBus(transport=first)
    bus.subscribe("orders.*", handle, group="workers")
    await bus.start()
    (group,) = first._groups.values()
    queues = list(group.queue_names)
    await bus.close()

    received: list[Any] = []
    old = await aiormq.connect(amqp_url)
    try:
        channel = await old.channel()
        await channel.basic_qos(prefetch_count=10)

        async def on_message(message: Any) -> None:
            received.append(message.header.properties.headers)
            await message.channel.basic_ack(message.delivery.delivery_tag)

        for queue in queues:  # first in line on each: the active consumer everywhere
            await channel.basic_consume(queue, on_message)
        arguments = {"x-expires": 60_000} if presence == ".presence" else None
        await channel.queue_declare(group.base + presence, auto_delete=True, arguments=arguments)
        await channel.basic_consume(group.base + presence, on_message, no_ack=True)

        # two members of this version join: with the older one, two or three members,
        # neither active anywhere
        transports = [rabbitmq_transports(rebalance_interval=0.2) for _ in range(2)]
        buses = [EventBus(transport=transport) for transport in transports]
        for bus in buses:
            bus.subscribe("orders.*", handle, group="workers")
            await bus.start()
        try:

            def notices() -> list[logging.LogRecord]:
                return [r for r in caplog.records if "earlier version" in r.getMessage()]

            # both saw the older member (or, before, pinged it)
            await eventually(lambda: bool(received) or len(notices()) == 2, timeout=20)
            await asyncio.sleep(1.0)  # five more rounds
            assert received == []  # the older member got no ping to log
            found = notices()
            assert len(found) == 2  # once by each member of this version
            for notice in found:
                assert notice.levelno == logging.INFO
                assert "'workers'" in notice.getMessage()
            assert not active(transports[0]) and not active(transports[1])
            # members joining and leaving while the others count (a third one, twenty
            # times, against rounds every 20 ms): a member counted on .pings before it
            # was on .presence made the older member look like one of ours
            quick = rabbitmq_transports(rebalance_interval=0.02)
            counting = EventBus(transport=quick)
            counting.subscribe("orders.*", handle, group="workers")
            await counting.start()
            joining = EventBus(transport=rabbitmq_transports(rebalance_interval=60))
            for _ in range(20):
                joining.subscribe("orders.*", handle, group="workers")
                await joining.start()
                await asyncio.sleep(0.05)
                await joining.unsubscribe("orders.*", handle, group="workers")
            await counting.close()
            await joining.close()
            assert received == []
        finally:
            await old.close()  # the older member is gone: the partitions go to ours

        # pinging resumes: the partitions, all idle, are split between the two
        def balanced() -> bool:
            owned = [active(transport) for transport in transports]
            return sum(map(len, owned)) == PARTITIONS and all(len(o) == 6 for o in owned)

        await eventually(balanced, timeout=20)
        await eventually(
            lambda: any("every member now answers" in r.getMessage() for r in caplog.records)
        )
        for bus in buses:
            await bus.close()
    finally:
        if not old.is_closed:
            await old.close()
        cleanup = await aiormq.connect(amqp_url)
        channel = await cleanup.channel()
        await channel.queue_delete(group.base + presence)
        await cleanup.close()
