"""RabbitMQ groups: members with different partition counts that start at the same moment.

Each looked at the queue names, found nothing (the other had not declared anything yet)
and declared its own layout: both joined, two layouts side by side, every event of the
group routed to both and handled twice. The group's layout mark (``<base>.layout``, its
``x-max-length`` the count) is declared by the first and refused by the broker to the
second, whatever the timing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiormq
import pytest

from pepperpy.event import ConfigurationError, Event, EventBus
from pepperpy.event.transports.rabbitmq import RabbitMQTransport
from tests.conftest import unique_name

pytestmark = pytest.mark.rabbitmq


async def handle(event: Event) -> None:
    pass


@pytest.mark.parametrize("counts", [(12, 6), (1, 4)])
async def test_different_counts_at_the_same_moment(amqp_url: str, counts: tuple[int, int]) -> None:
    exchange = unique_name("pep.x")
    transports = [RabbitMQTransport(amqp_url, exchange=exchange, partitions=n) for n in counts]
    buses = [EventBus(transport=transport) for transport in transports]

    async def join(bus: EventBus, group: str) -> None:
        bus.subscribe("orders.*", handle, group=group)
        await bus.start()

    try:
        for bus in buses:
            await bus.start()
        for round_ in range(10):
            group = f"g{round_}"
            results: list[Any] = await asyncio.gather(
                *(join(bus, group) for bus in buses), return_exceptions=True
            )
            refused = [r for r in results if isinstance(r, ConfigurationError)]
            assert len(refused) == 1, f"round {round_}: {results}"
            (error,) = refused
            joined = results.index(None)
            message = str(error)
            assert f"already exists with another partition count ({counts[joined]})" in message
            assert f"than {counts[1 - joined]}" in message
            assert f"bus.delete_group('orders.*', '{group}')" in message
            (base,) = [g.base for g in transports[joined]._groups.values()]
            for bus in buses:  # the refused one too: its bus keeps the handler
                await bus.unsubscribe("orders.*", handle, group=group)
            await buses[0].delete_group("orders.*", group)
            assert not await exists(amqp_url, base + ".layout")  # deleted with the group
            # the way out the error names: with the group deleted, the other count joins
            await join(buses[1 - joined], group)
            await buses[1 - joined].unsubscribe("orders.*", handle, group=group)
            await buses[0].delete_group("orders.*", group)
    finally:
        for bus in buses:
            await bus.close()
        for transport in transports:  # each deletes the layout it declared
            await transport.delete_topology()


async def exists(url: str, queue: str) -> bool:
    connection = await aiormq.connect(url)
    try:
        channel = await connection.channel()
        try:
            await channel.queue_declare(queue, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity:
            return False
        await channel.close()
        return True
    finally:
        await connection.close()


@pytest.mark.parametrize("partitions", [1, 3])
async def test_another_queue_type_is_named(
    rabbitmq_transports: Callable[..., RabbitMQTransport], partitions: int
) -> None:
    """A member with another queue_type got a TransportError quoting the broker's
    PRECONDITION_FAILED, as if the broker had failed; it is a ConfigurationError naming
    the option, like another partition count."""
    first = EventBus(transport=rabbitmq_transports(partitions=partitions))
    second = EventBus(transport=rabbitmq_transports(partitions=partitions, queue_type="classic"))
    first.subscribe("orders.*", handle, group="workers")
    second.subscribe("orders.*", handle, group="workers")
    try:
        await first.start()
        with pytest.raises(ConfigurationError) as caught:
            await second.start()
        message = str(caught.value)
        assert "group 'workers' on 'orders.*' already exists with another queue_type" in message
        assert "than 'classic': every process of a group must use the same 'queue_type'" in message
        assert "x-queue-type" in message  # the broker's words, for the record
        await second.unsubscribe("orders.*", handle, group="workers")
        assert not second.transport._consumers  # type: ignore[attr-defined]  # nothing left
    finally:
        await first.close()
        await second.close()
