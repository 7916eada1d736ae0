"""Retiring a group on RabbitMQ: no queue or exchange of it is left, and what a member
still running elsewhere does (docs/transport-rabbitmq.md, "Retiring a group")."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from pepperpy.event import ConfigurationError, Event, EventBus
from pepperpy.event.transports.rabbitmq import RabbitMQTransport
from tests.helpers import eventually, settle

pytestmark = pytest.mark.rabbitmq


@pytest.fixture
async def broker(amqp_url: str) -> AsyncIterator[Any]:
    """A plain aio-pika connection, to look at what the broker has."""
    import aio_pika

    connection = await aio_pika.connect(amqp_url)
    yield connection
    await connection.close()


async def _messages(connection: Any, queue: str) -> int | None:
    """How many messages ``queue`` holds; None when there is no such queue (a passive
    declare, on a channel of its own: the broker closes it on a 404)."""
    from aiormq.exceptions import ChannelNotFoundEntity

    channel = await connection.channel()
    try:
        declared = await channel.declare_queue(queue, passive=True)
    except ChannelNotFoundEntity:
        return None
    count = declared.declaration_result.message_count
    await channel.close()
    return int(count or 0)


async def _exchange_exists(connection: Any, name: str) -> bool:
    from aiormq.exceptions import ChannelNotFoundEntity

    channel = await connection.channel()
    try:
        await channel.declare_exchange(name, passive=True)
    except ChannelNotFoundEntity:
        return False
    await channel.close()
    return True


async def _until(condition: Callable[[], Any], what: str, timeout: float = 10.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if await condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what} within {timeout}s")


async def test_a_deleted_group_leaves_no_queue_or_exchange_of_any_layout(
    rabbitmq_transports: Callable[..., RabbitMQTransport], broker: Any
) -> None:
    """Its partition queues held every event published after its members left, until a
    disk alarm. Deleted here by a transport with another partition count: the group a
    member with the new count refuses to join goes whole."""
    left = EventBus(transport=rabbitmq_transports(partitions=3))
    handled: list[int] = []

    async def billing(event: Event) -> None:
        handled.append(event.data)

    left.subscribe("orders.*", group="billing")(billing)
    await left.start()
    for n in range(12):
        await left.publish("orders.placed", n, key=f"k{n}")
    await eventually(lambda: len(handled) == 12)
    group: Any = next(iter(left.transport._groups.values()))  # type: ignore[attr-defined]
    base, queues = group.base, list(group.queue_names)
    assert await left.unsubscribe("orders.*", billing, group="billing") is True
    for n in range(12, 22):
        await left.publish("orders.placed", n, key=f"k{n}")

    async def backlog() -> bool:
        counts = [await _messages(broker, queue) for queue in queues]
        return sum(count or 0 for count in counts) == 10

    await _until(backlog, "the group's queues did not hold its backlog")
    marks = [queue + ".released" for queue in queues]
    assert any([await _messages(broker, mark) is not None for mark in marks])
    exchanges = [base + ".lanes", base + ".nolane"]
    assert all([await _exchange_exists(broker, name) for name in exchanges])
    assert await _messages(broker, base + ".layout") == 0  # the layout mark (12)

    joining = EventBus(transport=rabbitmq_transports(partitions=2))
    joined: list[int] = []
    joining.subscribe("orders.*", group="billing")(lambda e: joined.append(e.data))
    with pytest.raises(ConfigurationError, match=r"bus\.delete_group\('orders\.\*', 'billing'\)"):
        await joining.start()  # the refusal names the way out

    deleting = EventBus(transport=rabbitmq_transports(partitions=2))
    await deleting.delete_group("orders.*", "billing")
    for queue in [*queues, *marks, base + ".presence", base + ".pings", base + ".layout"]:
        assert await _messages(broker, queue) is None, f"{queue} is left"
    for name in exchanges:
        assert not await _exchange_exists(broker, name), f"exchange {name} is left"
    # the refused subscription was removed (test_bus_refused_subscription.py): again
    joining.subscribe("orders.*", group="billing")(lambda e: joined.append(e.data))
    await joining.start()  # nothing to refuse any more: the group is made anew
    await deleting.publish("orders.placed", 99)
    await eventually(lambda: joined == [99])
    for bus in (left, joining, deleting):
        await bus.close()


@pytest.mark.parametrize("partitions", [1, 2])
async def test_a_member_still_running_elsewhere_gets_nothing_until_it_reconnects(
    amqp_url: str,
    proxy: Any,
    through_proxy: Callable[..., RabbitMQTransport],
    broker: Any,
    partitions: int,
) -> None:
    """The broker cancels its consumers; on its next connection it declares the group
    anew, bound to the exchange (with one partition, the queue came back unbound: the
    member consumed it for ever and got nothing)."""
    running_transport = through_proxy(partitions=partitions)
    running = EventBus(transport=running_transport)
    got: list[int] = []
    running.subscribe("orders.*", group="billing")(lambda e: got.append(e.data))
    deleting_transport = RabbitMQTransport(
        amqp_url, exchange=running_transport.exchange_name, partitions=partitions
    )
    deleting = EventBus(transport=deleting_transport)
    async with running, deleting:
        await deleting.publish("orders.placed", 0)
        await eventually(lambda: got == [0])
        group: Any = next(iter(running_transport._groups.values()))
        queues = list(group.queue_names)
        await deleting.delete_group("orders.*", "billing")
        for n in range(1, 6):
            await deleting.publish("orders.placed", n, key=f"k{n}")
        await settle(1.0)
        assert got == [0], "a member got events of a deleted group"
        for queue in queues:  # nothing made the partition queues anew meanwhile
            assert await _messages(broker, queue) is None
        if partitions > 1:  # only its presence queues, which aio-pika consumes itself

            async def present() -> bool:  # (.pings is declared last: the restore is over)
                names = [group.base + ".presence", group.base + ".pings"]
                return all([await _messages(broker, name) is not None for name in names])

            await _until(present, "the presence queue was not declared again")
        assert proxy.drop() > 0

        async def remade() -> bool:
            return all([await _messages(broker, queue) is not None for queue in queues])

        await _until(remade, "the member did not declare the group anew")
        for n in range(6, 11):
            await deleting.publish("orders.placed", n, key=f"k{n}")
        await eventually(lambda: set(range(6, 11)) <= set(got), timeout=15)
        await settle(0.3)
        assert sorted(got) == [0, *range(6, 11)]  # nothing was bound meanwhile
