"""RabbitMQ: subscriptions that come and go leave nothing behind on the connection.

aio-pika registers two ``closing`` observers on aiormq's connection for every channel
opened and closed, and never unregisters them; a consumer has a channel of its own and
a group's partition check opened one per passive declare. A bus whose subscriptions come
and go grew without bound (2 callbacks per ungrouped subscription, 14 per group with two
partitions, each holding its channel's callbacks). Each test uses an exchange of its own
and deletes what it declared.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from pepperpy.event import Event
from pepperpy.event.transports import Subscription
from pepperpy.event.transports.rabbitmq import RabbitMQTransport
from tests.conftest import unique_name

pytestmark = pytest.mark.rabbitmq


@pytest.fixture
async def transport(amqp_url: str) -> AsyncIterator[RabbitMQTransport]:
    made = RabbitMQTransport(
        amqp_url, exchange=unique_name("pep.churn"), partitions=2, queue_type="classic"
    )
    await made.start()
    yield made
    await made.close()
    await made.delete_topology()


def held_by_connection(transport: RabbitMQTransport) -> tuple[int, int]:
    """(callbacks on the aiormq connection's closing future, channels it has open)."""
    robust = transport._connection
    assert robust is not None and robust.transport is not None
    underlay: Any = robust.transport.connection
    return len(underlay._closing._callbacks or ()), len(underlay.channels)


async def churn(transport: RabbitMQTransport, group: str | None, times: int) -> None:
    async def handle(event: Event) -> None:
        return None

    for round_ in range(times):
        subscription = Subscription("churn.*", handle, group, f"s{round_ % 3}")
        await transport.subscribe(subscription)
        subscription.mark_removed()
        await transport.unsubscribe(subscription)
    await asyncio.sleep(0)  # released observers unregister on the next loop iteration


@pytest.mark.parametrize("group", [None, "workers"])
async def test_subscribe_unsubscribe_churn_does_not_grow_the_connection(
    transport: RabbitMQTransport, group: str | None
) -> None:
    await churn(transport, group, 20)
    callbacks_20, channels_20 = held_by_connection(transport)
    await churn(transport, group, 100)
    callbacks_120, channels_120 = held_by_connection(transport)
    # before the fix: +200 callbacks ungrouped, +1,400 for the group, over these 100
    assert callbacks_120 <= callbacks_20 + 2, (callbacks_20, callbacks_120)
    assert channels_120 <= channels_20, (channels_20, channels_120)


async def test_existence_checks_share_one_channel_across_missing_queues(
    transport: RabbitMQTransport,
) -> None:
    """A passive declare of a missing queue closes its channel (404): the next reopens."""
    connection = transport._connection
    assert connection is not None
    missing = [unique_name("pep.churn.missing") for _ in range(30)]
    before = held_by_connection(transport)
    assert [await transport._queue_exists(name) for name in missing] == [False] * 30
    await transport.subscribe(Subscription("churn.x", _ignore, None, "present"))
    present = next(c.queue_name for c in transport._consumers if c.queue_name is not None)
    assert await transport._queue_exists(present) is True
    assert await transport._queue_exists(present) is True  # on the same, still open channel
    callbacks, channels = held_by_connection(transport)
    # the consumer's channel and the probe's own: nothing per question asked
    assert callbacks <= before[0] + 2 and channels <= before[1] + 2, (before, callbacks, channels)


async def _ignore(event: Event) -> None:
    return None
