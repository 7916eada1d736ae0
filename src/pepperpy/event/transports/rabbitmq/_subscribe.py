"""Setting subscriptions up and taking them down: an ungrouped subscription's queue of
its own, or a group's partition queues, shared with its other members."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..._loops import settled
from ..base import Subscription
from ._config import expiry_ms
from ._consumer import Consumer, Members
from ._group import Group, group_base

if TYPE_CHECKING:
    from aio_pika.abc import AbstractChannel, AbstractQueue

    from ._transport import RabbitMQTransport

__all__ = ["join_alone", "join_group", "leave_alone", "leave_group"]


async def join_alone(transport: RabbitMQTransport, subscription: Subscription) -> None:
    """Consume an ungrouped subscription's own queue, declared and bound to its pattern."""
    # named per subscription and per transport instance, so a consumer that
    # reconnects finds its queue (and what arrived meanwhile) again; ``x-expires``
    # deletes it once nobody consumed from it for ``ungrouped_expiry`` seconds
    name = f"{transport.exchange_name}.sub.{subscription.name}.{transport._instance}"
    arguments: dict[str, Any] = {"x-expires": expiry_ms(transport.ungrouped_expiry)}

    async def declare(channel: AbstractChannel, pattern: str) -> AbstractQueue:
        queue = await channel.declare_queue(name, arguments=arguments)
        await queue.bind(transport.exchange_name, routing_key=pattern)
        return queue

    consumer = Consumer(transport, Members([subscription]), subscription.pattern, None, declare)
    transport._consumers.append(consumer)
    transport._declared(queue=name)
    if name not in transport._private_queues:
        transport._private_queues.append(name)
    try:
        await consumer.open()
    except BaseException:  # not subscribed: nothing of it may go on consuming
        transport._consumers.remove(consumer)
        consumer.retire()
        await consumer.close_channel()
        raise


async def join_group(transport: RabbitMQTransport, subscription: Subscription) -> None:
    """Join the subscription's group: share this process's consumers of it, or open them."""
    group = transport._groups.get(subscription.name)
    if group is not None:  # another member in this process: share its consumers
        group.members.add(subscription)
        for consumer in group.consumers:
            if consumer.stalled and not consumer.retired:  # all members had left:
                await consumer.rejoin()  # return what it held, consume again
        return
    assert subscription.group is not None
    base = group_base(transport.exchange_name, subscription.group, subscription.name)
    group = Group(transport, base, subscription)
    try:
        await group.open()
    except BaseException:  # not subscribed: leave no consumer or channel of it behind
        transport._consumers = [c for c in transport._consumers if c not in group.consumers]
        await group.close()
        raise
    transport._groups[subscription.name] = group


async def leave_group(transport: RabbitMQTransport, subscription: Subscription) -> None:
    """Leave the subscription's group (see ``RabbitMQTransport.unsubscribe``)."""
    group = transport._groups.get(subscription.name)
    if group is None or subscription not in group.members.subscriptions:
        return
    if len(group.members.subscriptions) > 1:
        group.members.remove(subscription)
        return
    del transport._groups[subscription.name]
    for consumer in group.consumers:
        transport._consumers.remove(consumer)
    await group.close()


async def leave_alone(transport: RabbitMQTransport, subscription: Subscription) -> None:
    """Stop an ungrouped subscription and delete its queue (see ``unsubscribe``)."""
    for consumer in transport._consumers:
        if consumer.members.subscriptions == [subscription]:
            break
    else:
        return
    transport._consumers.remove(consumer)
    consumer.retire()
    try:
        await consumer.finish_running()
    finally:  # cancelled too: no longer listed, it must not stay open (see Group.close)
        deadline = transport._deadline()
        await settled(consumer.close_channel(deadline))
    name = consumer.queue_name
    if name is not None and name in transport._private_queues:
        transport._private_queues.remove(name)
        transport._declared_queues.remove(name)
        await transport._delete_private_queue(name, deadline)
