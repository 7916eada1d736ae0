"""The RabbitMQ transport: one topic exchange, quorum queues for groups, publisher confirms.

How the bus's semantics map onto AMQP 0-9-1 (the full story is in
``docs/transport-rabbitmq.md``):

* Every event is published, as a persistent CloudEvents JSON message, to one durable
  *topic* exchange with its topic as the routing key; ``publish`` returns once the broker
  confirmed it (publisher confirms), i.e. once every queue it was routed to has it.
* Our patterns are AMQP binding keys unchanged: ``*`` is one word and ``#`` zero or more
  words in both languages (``#.failed`` matches ``failed`` on the broker too).
* An ungrouped subscription owns a non-durable queue that expires (``x-expires``) a
  minute after its consumer went away: it survives a reconnect, and leaves no backlog
  behind once the process has exited.
* A group owns ``partitions`` durable quorum queues, each with *single active consumer*.
  A publisher stamps each message with a lane (hash of its key, else of its id); the
  group's headers exchange sends each lane to one partition, so one key always lands in
  one queue and is consumed by one process at a time, in order. Members of a group
  balance the active partitions between them (see :class:`_Group`).
* Messages are acknowledged only after ``sub.deliver`` returned; a consumer that dies
  leaves them unacknowledged and the broker redelivers them. A message redelivered
  ``delivery_limit`` times (its consumer keeps crashing) is moved to ``deadletter.<topic>``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import os
import random
import time
import uuid
import zlib
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .._deps import require
from .._errors import ClosedError, ConfigurationError, EventError, TransportError
from .._event import Event, make_event
from .._patterns import matches, parse_pattern
from .base import Subscription, Transport

if TYPE_CHECKING:
    from aio_pika.abc import (
        AbstractChannel,
        AbstractIncomingMessage,
        AbstractQueue,
        AbstractRobustChannel,
        AbstractRobustConnection,
    )
    from aiormq.abc import DeliveredMessage
    from pamqp.commands import Basic

__all__ = ["RabbitMQTransport"]

logger = logging.getLogger("pepperpy.event.transports.rabbitmq")

#: content type of a structured-mode CloudEvent (CloudEvents AMQP binding)
CONTENT_TYPE = "application/cloudevents+json"
#: header carrying the lane (0..LANES-1) that picks a group's partition
LANE_HEADER = "pepperpy-lane"
LANES = 64
#: AMQP limits routing and binding keys to 255 bytes (a short string)
MAX_KEY_BYTES = 255
#: how long a finished delivery's ack may wait to share a frame with others (seconds)
ACK_DELAY = 0.001
_DEAD_LETTER_PREFIX = "deadletter."
_PERSISTENT = 2


class RabbitMQTransport(Transport):
    """Publishes to a RabbitMQ topic exchange and consumes through per-subscription queues.

    ``url`` is an AMQP URL (``amqp://user:pass@host:5672/vhost``, ``amqps://`` for TLS).
    Every option below can also be given in its query string
    (``amqp://host/?exchange=shop&partitions=4``); a keyword argument wins over the URL.
    Other query parameters (``heartbeat``, ``name``, TLS files) go to aio-pika.

    * ``exchange``: the topic exchange every event goes through (durable; created if
      missing; default ``pepperpy.events``). Applications that should see each other's
      events share it.
    * ``prefetch``: unacknowledged messages per consumer (default 128); events without a
      key are handled concurrently up to this many, events with one key one after another.
    * ``partitions``: durable queues per group (default 12). A group's members split the
      partitions between them (a member takes at most ``ceil(partitions / members)``), so
      this bounds how many processes share one group's work; each key stays in one
      partition, so its order holds. 12 splits evenly over 1, 2, 3, 4, 6 or 12 members.
    * ``queue_type``: ``"quorum"`` (replicated, the default) or ``"classic"`` for the
      group queues.
    * ``delivery_limit``: once one message was delivered this many times without an
      acknowledgement (its consumer crashed each time), the next delivery moves it to
      ``deadletter.<topic>`` instead of handling it again (default 10; ``0`` disables
      it). Counted by quorum queues only.
    * ``rebalance_interval``: seconds between checks that balance a group's active
      partitions over its member processes (default 1).
    * ``ungrouped_expiry``: seconds an ungrouped subscription's queue outlives its
      consumer (default 60): a reconnect within it loses nothing; after it the broker
      deletes the queue, so an exited process leaves no backlog behind.
    * ``connect_timeout``, ``reconnect_interval``: seconds to wait for the broker
      (default 10), and between reconnection attempts after it went away (default 1).
    """

    def __init__(
        self,
        url: str = "amqp://guest:guest@localhost:5672/",
        *,
        exchange: str | None = None,
        prefetch: int | None = None,
        partitions: int | None = None,
        queue_type: str | None = None,
        delivery_limit: int | None = None,
        rebalance_interval: float | None = None,
        ungrouped_expiry: float | None = None,
        connect_timeout: float | None = None,
        reconnect_interval: float | None = None,
    ) -> None:
        given = {
            "exchange": exchange,
            "prefetch": prefetch,
            "partitions": partitions,
            "queue_type": queue_type,
            "delivery_limit": delivery_limit,
            "rebalance_interval": rebalance_interval,
            "ungrouped_expiry": ungrouped_expiry,
            "connect_timeout": connect_timeout,
            "reconnect_interval": reconnect_interval,
        }
        self.url, options = _split_options(url, {k: v for k, v in given.items() if v is not None})
        self._aio_pika = require("aio_pika", extra="rabbitmq", feature="the RabbitMQ transport")
        self._aiormq = require("aiormq", extra="rabbitmq", feature="the RabbitMQ transport")
        self.exchange_name: str = options["exchange"]
        self.prefetch: int = options["prefetch"]
        self.partitions: int = options["partitions"]
        self.queue_type: str = options["queue_type"]
        self.delivery_limit: int = options["delivery_limit"]
        self.rebalance_interval: float = options["rebalance_interval"]
        self.ungrouped_expiry: float = options["ungrouped_expiry"]
        self.connect_timeout: float = options["connect_timeout"]
        self.reconnect_interval: float = options["reconnect_interval"]
        self._instance = uuid.uuid4().hex[:12]
        #: shown by ``rabbitmqctl list_connections client_properties`` and the management UI
        self.connection_name = f"pepperpy-event {self.exchange_name} pid={os.getpid()}"
        self._connection: AbstractRobustConnection | None = None
        self._publisher: AbstractChannel | None = None
        self._consumers: list[_Consumer] = []
        self._groups: dict[str, _Group] = {}
        self._declared_queues: list[str] = []
        self._private_queues: list[str] = []
        self._declared_exchanges: list[str] = [self.exchange_name]
        self._closed = False

    # -- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        """Connect (reconnecting with backoff after a broker restart) and declare the exchange."""
        if self._closed:
            raise ClosedError("the RabbitMQ transport is closed")
        if self._connection is not None:
            return
        aio_pika = self._aio_pika
        try:
            connection = await aio_pika.connect_robust(
                self.url,
                timeout=self.connect_timeout,
                reconnect_interval=self.reconnect_interval,
                client_properties={"connection_name": self.connection_name},
            )
        except (TimeoutError, OSError, aio_pika.exceptions.AMQPError) as exc:
            raise TransportError(
                f"cannot connect to RabbitMQ at {_redact(self.url)}: {exc}"
            ) from exc
        try:
            channel = await connection.channel(publisher_confirms=True)
            await channel.declare_exchange(
                self.exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
            )
        except aio_pika.exceptions.AMQPError as exc:
            await connection.close()
            raise TransportError(
                f"cannot declare topic exchange {self.exchange_name!r}: {exc}"
                " (does an exchange of another type or durability have that name?)"
            ) from exc
        self._connection = connection
        self._publisher = channel

    async def close(self) -> None:
        """Stop consuming, finish the deliveries in progress, then disconnect.

        Messages prefetched but not started stay unacknowledged and go back to their
        group's queue (in order) when the connection closes, for another member to take.
        The queues of ungrouped subscriptions are deleted: nobody else reads them.
        """
        if self._closed:
            return
        self._closed = True
        for group in self._groups.values():
            group.stop_rebalancing()
        for consumer in self._consumers:
            consumer.pause()
        await asyncio.gather(*(consumer.finish_running() for consumer in self._consumers))
        # closing the channels first returns the unstarted messages to their queues and
        # spares the broker cancelling consumers of the queues deleted below
        await asyncio.gather(*(consumer.close_channel() for consumer in self._consumers))
        connection, self._connection = self._connection, None
        publisher, self._publisher = self._publisher, None
        if publisher is not None:
            for name in self._private_queues:
                with contextlib.suppress(Exception):
                    await publisher.queue_delete(name)
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close()

    async def delete_topology(self) -> None:
        """Delete the exchange and every group queue and exchange this transport declared.

        Meant for tests and throw-away environments: it drops the groups' backlog. Works
        after :meth:`close` (it opens a connection of its own).
        """
        aio_pika = self._aio_pika
        try:
            connection = await aio_pika.connect(self.url, timeout=self.connect_timeout)
        except (TimeoutError, OSError, aio_pika.exceptions.AMQPError) as exc:
            raise TransportError(
                f"cannot connect to RabbitMQ at {_redact(self.url)}: {exc}"
            ) from exc
        async with connection:
            channel = await connection.channel()
            for queue in self._declared_queues:
                await channel.queue_delete(queue)
            for exchange in reversed(self._declared_exchanges):
                await channel.exchange_delete(exchange)

    # -- publishing -------------------------------------------------------------------

    async def publish(self, event: Event, *, key: str | None = None) -> None:
        """Send ``event`` to the exchange; returns once the broker confirmed it.

        If the connection is down, waits (up to ``connect_timeout``) for the robust
        connection to come back and sends once more; a confirm lost with the connection
        can so make a duplicate, which at-least-once delivery allows.
        """
        channel = self._publisher
        if channel is None:
            if self._closed:
                raise ClosedError("the RabbitMQ transport is closed")
            await self.start()
            channel = self._publisher
            assert channel is not None
        topic = event.type
        if len(topic.encode()) > MAX_KEY_BYTES:
            raise TransportError(
                f"topic {topic[:40]!r}... is longer than AMQP's {MAX_KEY_BYTES}-byte routing key"
            )
        lane = zlib.crc32((key if key is not None else event.id).encode()) % LANES
        properties = self._aiormq.spec.Basic.Properties(
            content_type=CONTENT_TYPE,
            delivery_mode=_PERSISTENT,
            message_id=event.id,
            headers={LANE_HEADER: lane},
        )
        body = event.to_json()
        errors = self._aiormq.exceptions
        for attempt in (1, 2):
            try:
                # aio-pika's Message adds nothing we need; publish on the raw channel
                underlay = await channel.get_underlay_channel()
                await underlay.basic_publish(
                    body,
                    exchange=self.exchange_name,
                    routing_key=topic,
                    properties=properties,
                    mandatory=False,
                )
                return
            except (errors.AMQPError, errors.ChannelInvalidStateError, ConnectionError) as exc:
                if attempt == 2 or self._closed or isinstance(exc, errors.DeliveryError):
                    raise TransportError(
                        f"RabbitMQ did not accept {topic!r} ({event.id}): {exc!r}"
                    ) from exc
                try:
                    await asyncio.wait_for(channel.ready(), self.connect_timeout)  # type: ignore[attr-defined]
                except Exception as reconnect_failed:
                    raise TransportError(
                        f"RabbitMQ connection lost while publishing {topic!r}: {exc!r}"
                    ) from reconnect_failed

    # -- subscribing ------------------------------------------------------------------

    async def subscribe(self, subscription: Subscription) -> None:
        """Declare and bind the subscription's queue(s) and start consuming from them."""
        if self._closed:
            raise ClosedError("the RabbitMQ transport is closed")
        if self._connection is None:
            await self.start()
        pattern = subscription.pattern
        parse_pattern(pattern)
        if len(pattern.encode()) > MAX_KEY_BYTES:
            raise TransportError(
                f"pattern {pattern[:40]!r}... is longer than AMQP's"
                f" {MAX_KEY_BYTES}-byte binding key"
            )
        try:
            if subscription.group is None:
                await self._subscribe_alone(subscription)
            else:
                await self._subscribe_in_group(subscription)
        except self._aio_pika.exceptions.AMQPError as exc:
            raise TransportError(
                f"cannot set up the RabbitMQ subscription to {pattern!r}: {exc}"
            ) from exc

    async def _subscribe_alone(self, subscription: Subscription) -> None:
        # named per subscription and per transport instance, so a consumer that
        # reconnects finds its queue (and what arrived meanwhile) again; ``x-expires``
        # deletes it once nobody consumed from it for ``ungrouped_expiry`` seconds
        name = f"{self.exchange_name}.sub.{subscription.name}.{self._instance}"
        arguments: dict[str, Any] = {"x-expires": int(self.ungrouped_expiry * 1000)}

        async def declare(channel: AbstractChannel, pattern: str) -> AbstractQueue:
            queue = await channel.declare_queue(name, arguments=arguments)
            await queue.bind(self.exchange_name, routing_key=pattern)
            return queue

        consumer = _Consumer(self, _Members([subscription]), subscription.pattern, None, declare)
        self._consumers.append(consumer)
        self._declared_queues.append(name)
        self._private_queues.append(name)
        await consumer.open()

    async def _subscribe_in_group(self, subscription: Subscription) -> None:
        group = self._groups.get(subscription.name)
        if group is not None:  # another member in this process: share its consumers
            group.members.add(subscription)
            return
        assert subscription.group is not None
        base = f"{self.exchange_name}.group.{subscription.group}.{subscription.name}"
        if len(base.encode()) > 230:
            raise ConfigurationError(
                f"group name too long for a queue name: {subscription.group!r}"
            )
        group = _Group(self, base, subscription)
        await group.open()
        self._groups[subscription.name] = group

    async def _channel(self) -> AbstractRobustChannel:
        if self._connection is None:
            raise ClosedError("the RabbitMQ transport is closed")
        channel = await self._connection.channel(publisher_confirms=False)
        await channel.set_qos(prefetch_count=self.prefetch)
        return channel

    def _group_queue_arguments(self) -> dict[str, Any]:
        arguments: dict[str, Any] = {"x-single-active-consumer": True}
        if self.queue_type == "quorum":
            arguments["x-queue-type"] = "quorum"
        return arguments

    async def _give_up(self, event: Event, deliveries: int, group: str | None) -> None:
        """Move a message its consumers never acknowledged to ``deadletter.<topic>``."""
        logger.error(
            "%s (%s) was delivered %d times without an acknowledgement; dead-lettering it",
            event.type,
            event.id,
            deliveries,
        )
        if event.type.startswith(_DEAD_LETTER_PREFIX):
            return
        metadata = dict(event.metadata)
        metadata["dlreason"] = (
            f"delivered {deliveries} times without an acknowledgement (consumer crashed or failed)"
        )
        metadata["dlattempts"] = deliveries
        metadata["dlid"] = event.id
        if group is not None:
            metadata["dlgroup"] = group
        dead = event.replace(
            type=_DEAD_LETTER_PREFIX + event.type,
            metadata=metadata,
            id=make_event("x", None, None).id,
        )
        key = metadata.get("partitionkey")
        await self.publish(dead, key=key if isinstance(key, str) else None)


class _Members:
    """The subscriptions of one process sharing a consumer; picks one per event."""

    __slots__ = ("subscriptions", "_turn")

    def __init__(self, subscriptions: list[Subscription]) -> None:
        self.subscriptions = subscriptions
        self._turn = itertools.count()

    def add(self, subscription: Subscription) -> None:
        self.subscriptions.append(subscription)

    def pick(self) -> Subscription:
        subs = self.subscriptions
        if len(subs) == 1:
            return subs[0]
        return subs[next(self._turn) % len(subs)]


Declare = Callable[["AbstractChannel", str], Awaitable["AbstractQueue"]]


class _Acks:
    """Acknowledges one channel's deliveries in as few frames as possible.

    Acks that complete within ``ACK_DELAY`` of each other go out together: one ``multiple`` ack
    when no earlier delivery is still unsettled, else one frame each. Each frame is a
    syscall and a broker round of work, so under load this halves the frames a consumer
    sends. Every delivered tag is tracked until settled, so a ``multiple`` ack never
    covers a message left unacknowledged on purpose.
    """

    __slots__ = ("channel", "done", "flushing", "outstanding")

    def __init__(self, channel: Any) -> None:
        self.channel = channel  # the aiormq channel the tags belong to
        self.outstanding: set[int] = set()
        self.done: list[int] = []
        self.flushing: asyncio.Task[None] | None = None

    def ack(self, tag: int) -> None:
        self.done.append(tag)
        if self.flushing is None:
            self.flushing = asyncio.get_running_loop().create_task(self._flush())

    async def settled(self, tag: int, settle: Awaitable[None]) -> None:
        """Nack/reject ``tag`` individually, then stop tracking it."""
        await _settle(settle)
        self.outstanding.discard(tag)

    async def drain(self) -> None:
        """Wait until every ack requested so far was written."""
        while self.flushing is not None:
            await asyncio.shield(self.flushing)

    async def _flush(self) -> None:
        try:
            await asyncio.sleep(ACK_DELAY)  # let the acks of a burst gather
            while self.done:
                done, self.done = sorted(self.done), []
                self.outstanding.difference_update(done)
                lowest = min(self.outstanding, default=None)
                together = done if lowest is None else [t for t in done if t < lowest]
                single = done[len(together) :]
                if together:
                    await self.channel.basic_ack(together[-1], multiple=True)
                for tag in single:
                    await self.channel.basic_ack(tag)
        except Exception as exc:
            logger.debug("could not acknowledge (the channel closed): %s", exc)
            self.done.clear()
        finally:
            self.flushing = None


class _Consumer:
    """One AMQP consumer on one queue over its own channel.

    Events with a ``partitionkey`` are handled one after another per key (a *lane*);
    others concurrently, up to the channel's prefetch. Each message is acknowledged
    after delivery returned and negatively acknowledged (requeued) if delivery raised.
    """

    def __init__(
        self,
        transport: RabbitMQTransport,
        members: _Members,
        pattern: str,
        group: str | None,
        declare: Declare,
    ) -> None:
        self.transport = transport
        self.members = members
        self.pattern = pattern
        self.group = group
        self._declare = declare
        self._channel: AbstractChannel | None = None
        self._acks: _Acks | None = None
        self._generation = 0
        self._paused = False
        self._lanes: dict[str, deque[tuple[Event, int, _Acks]]] = {}
        self._running: set[asyncio.Future[Any]] = set()
        self.last_delivery = 0.0

    async def open(self) -> None:
        """Open a channel, declare the queue and start consuming (back of the line)."""
        channel = await self.transport._channel()
        queue = await self._declare(channel, self.pattern)
        self._generation += 1
        generation = self._generation
        self._channel = channel
        self._paused = False

        async def on_message(message: DeliveredMessage) -> None:
            acks = self._acks
            if acks is None or acks.channel is not message.channel:
                acks = self._acks = _Acks(message.channel)  # new channel (or reconnected)
            acks.outstanding.add(_tag(message))
            if self._paused or generation != self._generation:
                return  # left unacknowledged: requeued when that channel closes
            await self._on_message(message, acks)

        # consume on the raw channel: aio-pika would wrap every message in an object and
        # one more task; a reconnect restores the queue and bindings, and then calls this
        async def consume(*_: Any) -> None:
            underlay = await channel.get_underlay_channel()
            await underlay.basic_consume(queue.name, on_message, no_ack=False)

        await consume()
        channel.reopen_callbacks.add(consume)

    def pause(self) -> None:
        """Start no further deliveries (the unstarted ones return to the queue later)."""
        self._paused = True

    async def finish_running(self) -> None:
        """Wait for the deliveries in progress and for their acknowledgements."""
        while self._running:
            await asyncio.wait(list(self._running))
        if self._acks is not None:
            await self._acks.drain()

    async def rejoin(self) -> None:
        """Hand this queue to the next waiting consumer and queue up behind it.

        Deliveries in progress finish first; closing the channel returns the prefetched
        rest to the queue in order, so per-key order survives the handover.
        """
        self.pause()
        await self.finish_running()
        await self.close_channel()
        self.last_delivery = 0.0
        if not self.transport._closed:
            await self.open()

    async def close_channel(self) -> None:
        """Close this consumer's channel; its unacknowledged messages return to the queue."""
        channel, self._channel = self._channel, None
        self._lanes.clear()
        if channel is not None:
            with contextlib.suppress(Exception):
                await channel.close()

    async def _on_message(self, message: DeliveredMessage, acks: _Acks) -> None:
        self.last_delivery = time.monotonic()
        delivery = cast("Basic.Deliver", message.delivery)
        tag = _tag(message)
        try:
            event = Event.from_json(message.body)
        except EventError as exc:
            logger.error(
                "dropping a message on %r that is not a CloudEvents JSON document: %s",
                delivery.routing_key,
                exc,
            )
            await acks.settled(tag, acks.channel.basic_reject(tag, requeue=False))
            return
        if delivery.routing_key != event.type and not matches(self.pattern, event.type):
            acks.ack(tag)  # routed by a key that disagrees with its type
            return
        limit = self.transport.delivery_limit
        if limit and delivery.redelivered:
            deliveries = _delivery_count(message.header.properties.headers)
            if deliveries > limit:
                await self.transport._give_up(event, deliveries, self.group)
                acks.ack(tag)
                return
        key = event.metadata.get("partitionkey")
        if key is None:
            await self._run(event, tag, acks)
            return
        key = str(key)
        lane = self._lanes.get(key)
        if lane is not None:
            lane.append((event, tag, acks))
            return
        self._lanes[key] = lane = deque()
        try:
            await self._run(event, tag, acks)
            while lane and not self._paused:
                await self._run(*lane.popleft())
        finally:
            if self._lanes.get(key) is lane:
                del self._lanes[key]

    async def _run(self, event: Event, tag: int, acks: _Acks) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._running.add(task)
        try:
            try:
                await self.members.pick().deliver(event)
            except Exception:
                logger.exception("delivery of %s (%s) failed; requeueing it", event.type, event.id)
                await acks.settled(tag, acks.channel.basic_nack(tag, requeue=True))
                return
            acks.ack(tag)
        finally:
            self._running.discard(task)


class _Group:
    """A group's partition queues, its consumers in this process, and their balancing.

    Each partition is a durable queue with *single active consumer*: every member
    process consumes from every partition, the broker lets one of them at a time
    receive. As the first process to subscribe would end up active everywhere, members
    count each other (each holds a consumer on a small presence queue) and a member
    active on more than its share of busy partitions hands one back every
    ``rebalance_interval`` (finish in-flight work, close that channel, consume again):
    a member active on more than ``ceil(partitions / members)`` of them hands the excess
    to whoever waits next in line.
    """

    def __init__(self, transport: RabbitMQTransport, base: str, first: Subscription) -> None:
        self.transport = transport
        self.base = base
        self.pattern = first.pattern
        self.group = first.group
        self.members = _Members([first])
        count = transport.partitions
        self.queue_names = [base] if count == 1 else [f"{base}.p{i}" for i in range(count)]
        self.consumers = [
            _Consumer(transport, self.members, self.pattern, self.group, self._declarer(name))
            for name in self.queue_names
        ]
        self._presence = f"{base}.members"
        self._control: AbstractChannel | None = None
        self._rebalancer: asyncio.Task[None] | None = None

    def _declarer(self, name: str) -> Declare:
        async def declare(channel: AbstractChannel, pattern: str) -> AbstractQueue:
            return await channel.declare_queue(
                name, durable=True, arguments=self.transport._group_queue_arguments()
            )

        return declare

    async def _exists(self, queue: str) -> bool:
        connection = self.transport._connection
        assert connection is not None
        channel = await connection.channel(publisher_confirms=False)
        try:
            underlay = await channel.get_underlay_channel()  # no cached passive answers
            await underlay.queue_declare(queue, passive=True)
            return True
        except self.transport._aiormq.exceptions.ChannelNotFoundEntity:
            return False
        finally:
            with contextlib.suppress(Exception):
                await channel.close()

    async def _check_partitions(self) -> None:
        """Refuse to join a group whose queues were made with another partition count.

        Two partition layouts side by side would both receive the group's events: every
        event would be handled twice. The queue names tell the layouts apart.
        """
        count = len(self.queue_names)
        if count == 1:
            mismatch = await self._exists(f"{self.base}.p0")
        else:
            mismatch = (
                await self._exists(self.base)
                or await self._exists(f"{self.base}.p{count}")
                or (
                    await self._exists(f"{self.base}.p0")
                    and not await self._exists(f"{self.base}.p{count - 1}")
                )
            )
        if mismatch:
            raise ConfigurationError(
                f"group {self.group!r} on {self.pattern!r} already exists with another"
                f" partition count than {count}: every process of a group must use the"
                " same 'partitions'"
            )

    async def open(self) -> None:
        transport = self.transport
        aio_pika = transport._aio_pika
        assert transport._connection is not None
        await self._check_partitions()
        channel = await transport._connection.channel(publisher_confirms=False)
        # declare the topology before consuming, so nothing published after this returns
        # can miss the group
        if len(self.queue_names) == 1:
            queue = await channel.declare_queue(
                self.queue_names[0], durable=True, arguments=transport._group_queue_arguments()
            )
            await queue.bind(transport.exchange_name, routing_key=self.pattern)
            transport._declared_queues.append(self.queue_names[0])
        else:
            fallback = await channel.declare_exchange(
                f"{self.base}.nolane", aio_pika.ExchangeType.FANOUT, durable=True
            )
            lanes = await channel.declare_exchange(
                f"{self.base}.lanes",
                aio_pika.ExchangeType.HEADERS,
                durable=True,
                arguments={"alternate-exchange": fallback.name},
            )
            transport._declared_exchanges += [fallback.name, lanes.name]
            for index, name in enumerate(self.queue_names):
                queue = await channel.declare_queue(
                    name, durable=True, arguments=transport._group_queue_arguments()
                )
                transport._declared_queues.append(name)
                for lane in range(index, LANES, len(self.queue_names)):
                    await queue.bind(lanes, arguments={"x-match": "all", LANE_HEADER: lane})
                if index == 0:
                    await queue.bind(fallback)
            await lanes.bind(transport.exchange_name, routing_key=self.pattern)
            presence = await channel.declare_queue(self._presence, auto_delete=True)
            await presence.consume(_ignore, no_ack=True)
            self._control = channel
        transport._consumers.extend(self.consumers)
        order = list(self.consumers)
        random.shuffle(order)  # spreads first picks when members start at the same time
        for consumer in order:
            await consumer.open()
        if len(self.consumers) > 1:
            self._rebalancer = asyncio.get_running_loop().create_task(self._rebalance())
        else:
            with contextlib.suppress(Exception):
                await channel.close()

    def stop_rebalancing(self) -> None:
        if self._rebalancer is not None:
            self._rebalancer.cancel()
            self._rebalancer = None

    async def _rebalance(self) -> None:
        interval = self.transport.rebalance_interval
        while True:
            await asyncio.sleep(interval * random.uniform(0.8, 1.2))
            try:
                members = await self._count_members()
            except Exception as exc:  # broker away: robust connection reconnects; retry
                logger.debug("could not count the members of %s: %s", self.base, exc)
                continue
            if members <= 1:
                continue
            recent = time.monotonic() - 2 * interval
            active = [c for c in self.consumers if c.last_delivery >= recent]
            share = math.ceil(len(self.consumers) / members)
            if len(active) > share:
                excess = random.sample(active, len(active) - share)
                results = await asyncio.gather(
                    *(consumer.rejoin() for consumer in excess), return_exceptions=True
                )
                for result in results:
                    if isinstance(result, Exception):
                        logger.warning(
                            "could not hand a partition of %s over: %s", self.base, result
                        )

    async def _count_members(self) -> int:
        channel = self._control
        assert channel is not None
        # the robust channel answers passive declares from its cache: ask the broker
        underlay = await channel.get_underlay_channel()
        result = await underlay.queue_declare(self._presence, passive=True)
        return int(result.consumer_count or 0)


async def _ignore(message: AbstractIncomingMessage) -> None:
    return None


async def _settle(acknowledgement: Awaitable[None]) -> None:
    """Ack/nack/reject; a closed channel already returned the message to its queue."""
    try:
        await acknowledgement
    except Exception as exc:
        logger.debug("could not settle a message (its channel closed): %s", exc)


def _tag(message: DeliveredMessage) -> int:
    return cast(int, cast("Basic.Deliver", message.delivery).delivery_tag)


def _delivery_count(headers: dict[str, Any] | None) -> int:
    """How many times a redelivered message was delivered (quorum queues count them)."""
    count = (headers or {}).get("x-delivery-count")
    if isinstance(count, int) and not isinstance(count, bool):
        return count + 1
    return 2  # redelivered at least once


_DEFAULTS: dict[str, Any] = {
    "exchange": "pepperpy.events",
    "prefetch": 128,
    "partitions": 12,
    "queue_type": "quorum",
    "delivery_limit": 10,
    "rebalance_interval": 1.0,
    "ungrouped_expiry": 60.0,
    "connect_timeout": 10.0,
    "reconnect_interval": 1.0,
}
_SECONDS = ("rebalance_interval", "ungrouped_expiry", "connect_timeout", "reconnect_interval")


def _split_options(url: str, given: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Take our options out of the URL's query; merge them under ``given`` and defaults."""
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme.lower() not in ("amqp", "amqps"):
        raise ConfigurationError(f"RabbitMQ needs an amqp:// or amqps:// URL, got {url!r}")
    ours: dict[str, Any] = {}
    rest: list[tuple[str, str]] = []
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name not in _DEFAULTS:
            rest.append((name, value))
        elif name in ("exchange", "queue_type"):
            ours[name] = value
        else:
            try:
                ours[name] = float(value) if name in _SECONDS else int(value)
            except ValueError as exc:
                raise ConfigurationError(f"URL option {name}={value!r} is not a number") from exc
    options = {**_DEFAULTS, **ours, **given}
    _check_options(options)
    return urlunsplit(parts._replace(query=urlencode(rest))), options


def _check_options(options: dict[str, Any]) -> None:
    exchange = options["exchange"]
    if not isinstance(exchange, str) or not exchange or len(exchange.encode()) > 200:
        raise ConfigurationError(f"exchange must be a non-empty name (<= 200 bytes): {exchange!r}")
    if exchange.startswith("amq."):
        raise ConfigurationError(f"exchange names starting with 'amq.' are reserved: {exchange!r}")
    for name, least in (("prefetch", 1), ("partitions", 1), ("delivery_limit", 0)):
        value = options[name]
        if not isinstance(value, int) or isinstance(value, bool) or value < least:
            raise ConfigurationError(f"{name} must be an int >= {least}, got {value!r}")
    if options["partitions"] > LANES:
        raise ConfigurationError(f"partitions must be at most {LANES}, got {options['partitions']}")
    if options["queue_type"] not in ("quorum", "classic"):
        raise ConfigurationError(
            f"queue_type must be 'quorum' or 'classic', got {options['queue_type']!r}"
        )
    for name in _SECONDS:
        value = options[name]
        if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
            raise ConfigurationError(f"{name} must be a positive number, got {value!r}")
        options[name] = float(value)


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))
