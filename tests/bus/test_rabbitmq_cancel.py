"""RabbitMQ: a cancelled task of the transport ends, even when the driver lost the
cancellation.

aiormq waits for a channel's CloseOk (closing a consumer's channel, as a group's
rebalancing handover does) with ``asyncio.wait_for``, which on CPython 3.11 returns when
a cancellation arrives just as the answer does: the cancellation is lost, only
``Task.cancelling()`` remembers it. The fakes below lose the first cancellation they get,
as such a call can; the loop around them must still end (before, it went on, and
``close()``, waiting for it, never returned). Each test uses an exchange of its own and
deletes what it declared.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from pepperpy.event import Event, TransportError
from pepperpy.event.transports import Subscription
from pepperpy.event.transports.rabbitmq import RabbitMQTransport, _config
from pepperpy.event.transports.rabbitmq._config import PRESENCE
from pepperpy.event.transports.rabbitmq._consumer import Consumer
from pepperpy.event.transports.rabbitmq._group import group_base
from tests.bus.faultproxy import FaultProxy, finishes, tasks_left
from tests.conftest import unique_name
from tests.helpers import LosesCancellation, eventually

pytestmark = pytest.mark.rabbitmq


@pytest.fixture
async def transport(amqp_url: str) -> AsyncIterator[RabbitMQTransport]:
    made = RabbitMQTransport(
        amqp_url,
        exchange=unique_name("pep.cancel"),
        partitions=2,
        queue_type="classic",
        rebalance_interval=0.05,
    )
    await made.start()
    yield made
    await finishes(made.close(), 15)
    await finishes(made.delete_topology(), 15)


async def _ignore(event: Event) -> None:
    return None


def channels_open(transport: RabbitMQTransport) -> int:
    """Channels open on the transport's aiormq connection."""
    robust = transport._connection
    assert robust is not None and robust.transport is not None
    return len(robust.transport.connection.channels)


async def test_close_ends_a_rebalancer_whose_broker_call_lost_the_cancellation(
    transport: RabbitMQTransport,
) -> None:
    subscription = Subscription("cancel.*", _ignore, "workers", "rebalanced")
    await transport.subscribe(subscription)
    group = transport._groups["rebalanced"]
    count = LosesCancellation(result=1)
    group._count_members = count  # type: ignore[method-assign]
    await count.entered.wait()
    await finishes(transport.close(), 10)  # old code: counted members on, for ever
    assert count.lost == 1 and count.calls == 1
    assert group._rebalancer is None


# -- subscribing while the broker is away, or failing half-way --------------------------


async def test_subscribe_while_the_broker_is_unreachable_raises_transport_error(
    proxy: FaultProxy,
) -> None:
    """aio-pika's bare RuntimeError ('Connection was not opened') escaped before."""
    made = RabbitMQTransport(
        f"amqp://guest:guest@127.0.0.1:{proxy.port}/",
        exchange=unique_name("pep.cancel"),
        partitions=2,
        queue_type="classic",
        connect_timeout=1.0,
        reconnect_interval=0.2,
    )
    await made.start()
    try:
        proxy.refuse()
        proxy.drop()
        await eventually(lambda: not made._connected())
        for group in ("workers", None):
            subscription = Subscription("cancel.*", _ignore, group, f"away{group}")
            with pytest.raises(TransportError, match="unreachable while subscribing"):
                await finishes(made.subscribe(subscription), 10)
        assert made._consumers == [] and made._groups == {}
    finally:
        proxy.heal()
        await finishes(made.close(), 15)
        await finishes(made.delete_topology(), 15)


async def test_a_group_subscription_failing_half_way_leaves_no_consumer_behind(
    transport: RabbitMQTransport, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One partition consumed, the next failed: the first consumed on for a subscription
    nobody knew of (not in the transport's groups, so never unsubscribed)."""
    from aiormq.exceptions import ChannelClosed

    before = channels_open(transport)
    opened = 0
    original = Consumer.open

    async def second_fails(self: Consumer) -> None:
        nonlocal opened
        opened += 1
        if opened == 2:
            raise ChannelClosed(406, "PRECONDITION_FAILED - injected")
        await original(self)

    monkeypatch.setattr(Consumer, "open", second_fails)
    subscription = Subscription("cancel.*", _ignore, "workers", "half")
    with pytest.raises(TransportError, match="injected"):
        await transport.subscribe(subscription)
    assert opened == 2
    assert transport._consumers == [] and transport._groups == {}
    assert channels_open(transport) <= before + 1  # the existence probe's
    monkeypatch.setattr(Consumer, "open", original)
    await transport.subscribe(subscription)  # the bus registers it again later
    subscription.mark_removed()
    await transport.unsubscribe(subscription)
    assert transport._consumers == []


async def test_an_ungrouped_subscription_whose_queue_is_refused_leaves_no_channel_open(
    transport: RabbitMQTransport, amqp_url: str
) -> None:
    """A queue declare the broker refuses closes the consumer's channel, which aio-pika's
    robust channel then reopened: it stayed open, owned by nobody."""
    subscription = Subscription("cancel.*", _ignore, None, "refused")
    name = f"{transport.exchange_name}.sub.{subscription.name}.{transport._instance}"
    aio_pika = pytest.importorskip("aio_pika")
    async with await aio_pika.connect(amqp_url) as other:
        channel = await other.channel()
        # the same name with other arguments: PRECONDITION_FAILED for ours
        await channel.declare_queue(name, arguments={"x-expires": 600_000})
        try:
            before, tasks = channels_open(transport), set(asyncio.all_tasks())
            with pytest.raises(TransportError, match="PRECONDITION_FAILED"):
                await transport.subscribe(subscription)
            assert transport._consumers == []
            # aio-pika handles the broker's close in a task of its own (reopening the
            # robust channel, before): once it is done, the channel must be gone
            await eventually(lambda: tasks_left(tasks) == [])
            assert channels_open(transport) <= before
        finally:
            await channel.queue_delete(name)


async def test_a_presence_queue_declared_but_never_consumed_expires(
    transport: RabbitMQTransport, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A member that failed between declaring its group's presence queue and consuming
    from it (or whose reconnect's restore was cut short there) left that queue for good:
    auto-delete only deletes a queue that had a consumer. The CI runs found such
    ``.members`` queues left behind. Now the broker deletes it ``x-expires`` later."""
    from aio_pika.robust_queue import RobustQueue
    from aiormq.exceptions import ChannelInvalidStateError

    monkeypatch.setattr(_config, "PRESENCE_EXPIRY", 0.5)
    original = RobustQueue.consume

    async def presence_fails(self: RobustQueue, *args: Any, **kwargs: Any) -> Any:
        if self.name.endswith(PRESENCE):
            raise ChannelInvalidStateError("injected: the connection went away")
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(RobustQueue, "consume", presence_fails)
    subscription = Subscription("cancel.*", _ignore, "workers", "unconsumed")
    with pytest.raises(TransportError, match="injected"):
        await transport.subscribe(subscription)
    assert transport._groups == {}
    presence = group_base(transport.exchange_name, "workers", "unconsumed") + PRESENCE
    assert await transport._queue_exists(presence)  # declared, never consumed
    # a passive declare is a use, which restarts the expiry: look less often than that
    deadline = time.monotonic() + 15
    while await transport._queue_exists(presence):
        assert time.monotonic() < deadline, f"{presence} did not expire"
        await asyncio.sleep(1.0)


# -- unsubscribing cancelled while a handler runs ---------------------------------------


class Blocking:
    """A handler that records each event and waits for ``release`` on the first one."""

    def __init__(self) -> None:
        self.got: list[Any] = []
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, event: Event) -> None:
        self.got.append(event.data)
        if len(self.got) == 1:
            self.started.set()
            await self.release.wait()


@pytest.mark.parametrize("grouped", [True, False])
async def test_an_unsubscribe_cancelled_while_a_handler_runs_still_lets_the_queue_go(
    amqp_url: str, grouped: bool
) -> None:
    """A timeout around unsubscribe() while a handler ran left the retired consumer's
    channel open: a group's partition stayed with this (paused) member, which held its
    messages unstarted, so the group's other members never got them."""
    exchange = unique_name("pep.cancel")
    made: list[RabbitMQTransport] = []

    def transport() -> RabbitMQTransport:
        made.append(
            RabbitMQTransport(amqp_url, exchange=exchange, partitions=1, queue_type="classic")
        )
        return made[-1]

    first, second = transport(), transport()
    try:
        await first.start()
        await second.start()
        slow, other = Blocking(), Blocking()
        other.release.set()
        group = "workers" if grouped else None
        leaving = Subscription("cancel.*", slow, group, "leaving")
        await first.subscribe(leaving)
        await first.publish(Event("cancel.one", 1))
        await slow.started.wait()
        [consumer] = first._consumers
        leaving.mark_removed()
        unsubscribing = asyncio.get_running_loop().create_task(first.unsubscribe(leaving))
        await eventually(lambda: consumer.retired)  # waiting for the handler now
        unsubscribing.cancel()
        await finishes(asyncio.wait([unsubscribing]), 10)
        assert unsubscribing.cancelled()
        slow.release.set()
        assert consumer._channel is None  # old code: still open, and consuming
        if grouped:  # the next member takes over the partition, with what was unsettled
            await second.subscribe(Subscription("cancel.*", other, group, "leaving"))
            await second.publish(Event("cancel.two", 2))
            await eventually(lambda: 2 in other.got)
    finally:
        for each in made:
            await finishes(each.close(), 15)
        await finishes(made[0].delete_topology(), 15)
