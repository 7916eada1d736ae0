"""NATS and RabbitMQ: a key's lane after a handler swallowed its task's cancellation.

Events with one key are delivered one after the other in one task of the transport's.
A handler may catch the cancellation of that task and return (as ``async_timeout`` before
5.0 does on CPython 3.11, or a handler that catches ``CancelledError`` around its work):
the task's ``cancelling()`` count then stays up. The lane used to go on, and took every
later handler's own ``CancelledError`` (it awaited a future someone else cancelled, a
failure) for a shutdown: NATS forgot the message until ``ack_wait``, RabbitMQ left it
unacknowledged on a channel that stays open, so it never came back while the consumer
lived. And when the cancellation was a real shutdown's, the lane went on delivering the
key's backlog in the cancelled task, so ``close()``, waiting for it, waited for all of it.
Now the lane stops there, hands the events waiting behind back to the broker at once,
and ends as cancelled. Each test has a stream, or an exchange, of its own, deleted after it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from pepperpy.event import Event
from pepperpy.event.transports import Subscription
from pepperpy.event.transports.nats import NatsTransport
from pepperpy.event.transports.nats._consumer import Consumer as NatsConsumer
from pepperpy.event.transports.rabbitmq import RabbitMQTransport
from tests.bus.faultproxy import finishes
from tests.conftest import unique_name
from tests.helpers import eventually

KEY = "k"


class Lane:
    """A handler for events 1 (first, in the lane's task) and 2 (queued behind it).

    Event 1 waits until ``release``, then either cancels its own task and swallows that
    (``cancels_itself``) or waits to be cancelled by someone else and swallows it. Event
    2's first delivery fails with its own ``CancelledError`` (``fails_once``: an await of
    a future someone else cancelled) or blocks until its task is cancelled (``blocks``);
    its next one succeeds.
    """

    def __init__(self, *, cancels_itself: bool, second: str) -> None:
        self.cancels_itself = cancels_itself
        self.second = second
        self.log: list[tuple[int, str]] = []
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.handled_second = asyncio.Event()
        self.blocked: asyncio.Task[Any] | None = None  # the task event 2 blocks

    def unblock(self) -> None:
        """Cancel a delivery blocked in event 2 (old code: it would never end)."""
        if self.blocked is not None:
            self.blocked.cancel()

    async def __call__(self, event: Event) -> None:
        number = event.data
        if number == 1:
            self.started.set()
            try:
                await self.release.wait()
                if self.cancels_itself:
                    task = asyncio.current_task()
                    assert task is not None
                    task.cancel()  # as a timeout that never uncancels its task does
                    await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.log.append((1, "swallowed"))
                return
            self.log.append((1, "not cancelled"))
            return
        tries = sum(1 for n, _ in self.log if n == 2)
        if tries == 0:
            if self.second == "fails_once":
                self.log.append((2, "cancelled"))
                future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                future.cancel()
                await future  # someone else cancelled what it waited for: a failure
            self.log.append((2, "started"))
            self.blocked = asyncio.current_task()
            await asyncio.Event().wait()  # a long handler: until cancelled
        self.log.append((2, "handled"))
        self.handled_second.set()


async def queue_second(
    publish: Callable[[Event], Any], lane: Lane, queued: Callable[[], int]
) -> None:
    """Publish event 1, wait until its handler runs, then event 2 until it waits behind.

    Both carry the key as the bus sends it (the CloudEvents ``partitionkey``)."""
    await publish(Event("swallow.one", 1, {"partitionkey": KEY}))
    await finishes(lane.started.wait(), 15)
    await publish(Event("swallow.two", 2, {"partitionkey": KEY}))
    await eventually(lambda: queued() == 1)


# -- NATS -------------------------------------------------------------------------------


@pytest.fixture
async def nats_transport(nats_url: str) -> AsyncIterator[NatsTransport]:
    name = unique_name("pep_swallow")
    # ack_wait far beyond the waits below: an event forgotten (not nak'ed) fails the test
    made = NatsTransport(nats_url, stream=name.upper(), prefix=name, ack_wait=90)
    try:
        await made.start()
        yield made
        await finishes(made.close(), 15)
    finally:
        await finishes(made.delete_stream(), 15)


async def nats_lane(transport: NatsTransport, lane: Lane) -> NatsConsumer:
    await transport.subscribe(Subscription("swallow.*", lane, None, "swallowing"))
    [consumer] = transport._consumers.values()
    await queue_second(
        lambda event: transport.publish(event, key=KEY),
        lane,
        lambda: len(consumer._keyed.get(KEY, ())),
    )
    return consumer


@pytest.mark.nats
async def test_nats_the_event_after_a_swallowed_cancellation_is_delivered_again_at_once(
    nats_transport: NatsTransport,
) -> None:
    lane = Lane(cancels_itself=True, second="fails_once")
    consumer = await nats_lane(nats_transport, lane)
    [task] = consumer._tasks
    lane.release.set()
    # old code: event 2's own CancelledError was taken for a shutdown, and the event
    # forgotten until ack_wait (90 s)
    await finishes(lane.handled_second.wait(), 20)
    assert lane.log == [(1, "swallowed"), (2, "cancelled"), (2, "handled")]
    assert task.cancelled()  # the lane that swallowed it ended as cancelled
    await eventually(lambda: not consumer._unsettled and not consumer._keyed)


@pytest.mark.nats
async def test_nats_close_ends_a_lane_whose_handler_swallowed_the_shutdown(
    nats_transport: NatsTransport,
) -> None:
    lane = Lane(cancels_itself=False, second="blocks")
    consumer = await nats_lane(nats_transport, lane)
    [task] = consumer._tasks
    closing = asyncio.get_running_loop().create_task(nats_transport.close())
    try:
        await eventually(lambda: not consumer._subs)  # it stopped receiving; waits for us
        task.cancel()  # a shutdown cancelling the tasks; the handler swallows it
        await finishes(closing, 15)  # old code: started event 2 and waited for it for ever
    finally:
        lane.unblock()
    assert lane.log == [(1, "swallowed")]  # event 2 was not started by a cancelled task
    assert task.cancelled()


# -- RabbitMQ ---------------------------------------------------------------------------


@pytest.fixture
async def rabbitmq(amqp_url: str) -> AsyncIterator[list[RabbitMQTransport]]:
    """Two transports of one exchange (two member processes); closed, and what they
    declared deleted, after the test."""
    exchange = unique_name("pep.swallow")
    made = [
        RabbitMQTransport(amqp_url, exchange=exchange, partitions=1, queue_type="classic")
        for _ in range(2)
    ]
    try:
        for transport in made:
            await transport.start()
        yield made
    finally:
        try:
            for transport in made:
                await finishes(transport.close(), 15)
        finally:
            await finishes(made[0].delete_topology(), 15)


async def rabbitmq_lane(transport: RabbitMQTransport, lane: Lane, group: str | None) -> Any:
    await transport.subscribe(Subscription("swallow.*", lane, group, "swallowing"))
    [consumer] = transport._consumers
    await queue_second(
        lambda event: transport.publish(event, key=KEY),
        lane,
        lambda: len(consumer._lanes.get(KEY, ())),
    )
    return consumer


@pytest.mark.rabbitmq
@pytest.mark.parametrize("group", [None, "workers"])
async def test_rabbitmq_the_event_after_a_swallowed_cancellation_is_delivered_again(
    rabbitmq: list[RabbitMQTransport], group: str | None
) -> None:
    lane = Lane(cancels_itself=True, second="fails_once")
    consumer = await rabbitmq_lane(rabbitmq[0], lane, group)
    [task] = consumer._running
    lane.release.set()
    # old code: event 2's own CancelledError was taken for a shutdown, and the message
    # left unacknowledged on the open channel: it never came back
    await finishes(lane.handled_second.wait(), 20)
    assert lane.log == [(1, "swallowed"), (2, "cancelled"), (2, "handled")]
    assert task.cancelled()
    await eventually(lambda: not consumer._running and not consumer._unstarted)
    assert not consumer._lanes


@pytest.mark.rabbitmq
async def test_rabbitmq_close_after_a_swallowed_shutdown_hands_the_lane_to_the_next_member(
    rabbitmq: list[RabbitMQTransport],
) -> None:
    first, second = rabbitmq
    lane = Lane(cancels_itself=False, second="blocks")
    consumer = await rabbitmq_lane(first, lane, "workers")
    got: list[Any] = []
    await second.subscribe(
        Subscription("swallow.*", lambda event: _record(got, event), "workers", "swallowing")
    )
    [task] = consumer._running
    task.cancel()  # a shutdown cancelling its tasks, then closing; the handler swallows
    try:
        # old code: started event 2 and waited for it for ever
        await finishes(first.close(), 15)
    finally:
        lane.unblock()
    assert lane.log == [(1, "swallowed")]
    assert task.cancelled()
    await eventually(lambda: got == [2])  # the next member of the group took it


async def _record(got: list[Any], event: Event) -> None:
    got.append(event.data)
