"""A group: partition queues with single active consumer, balanced over member processes."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import math
import random
import re
import unicodedata
from typing import TYPE_CHECKING

from ..._errors import ConfigurationError
from ..._loops import settled
from ..base import Subscription, cancelled_by_caller, cancelling, quietly, resume_cancellation
from . import _config
from ._config import (
    AMQP_NAME,
    LANE_HEADER,
    LANES,
    LAYOUT,
    MAX_EXCHANGE_NAME,
    OLD_PRESENCE,
    PING_EXPIRY,
    PING_HEADER,
    PINGS,
    PRESENCE,
    RELEASED,
)
from ._consumer import Consumer, Declare, Members
from ._deliveries import warn_broker_limit

if TYPE_CHECKING:
    from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue
    from aiormq.abc import AbstractChannel as RawChannel

    from ._transport import RabbitMQTransport

logger = logging.getLogger("pepperpy.event.transports.rabbitmq")

#: the longest base: its longest derived name, the ``.nolane`` exchange, must fit
MAX_BASE = MAX_EXCHANGE_NAME - len(".nolane")
#: what the readable part of a shortened base keeps as it is (the rest becomes "_")
_UNREADABLE = re.compile(r"[^A-Za-z0-9_.-]+")
#: hex digits of the digest that makes a shortened base unique
_DIGEST_LENGTH = 20
#: longest a rebalancing round waits for its own pings (seconds; a quarter of
#: ``rebalance_interval`` when that is shorter)
PING_WAIT = 0.5


def group_base(exchange: str, group: str, name: str) -> str:
    """The prefix of the names of a group's queues and exchanges.

    ``<exchange>.group.<group>.<name>`` (``name``: the subscription's, a digest of group
    and pattern) whenever that makes names AMQP and aio-pika accept, as it always did,
    so existing groups keep their queues. Otherwise (a character pamqp refuses, such as
    ``*``, ``|``, ``>``, a control character or anything not ASCII, or a name too long
    for an exchange name): a readable part, the ASCII letters, digits, ``.``, ``-`` and
    ``_`` of ``<exchange>.group.<group>`` with the rest as ``_``, cut to fit, then ``+``
    and a digest of exchange, group and name. So every group name the bus accepts works,
    the same in every process, and two groups never share a queue.
    """
    base = f"{exchange}.group.{group}.{name}"
    if len(base) <= MAX_BASE and AMQP_NAME.fullmatch(base):
        return base
    identity = json.dumps([exchange, group, name])  # escapes what UTF-8 cannot carry
    digest = hashlib.sha256(identity.encode()).hexdigest()[:_DIGEST_LENGTH]
    ascii_only = unicodedata.normalize("NFKD", f"{exchange}.group.{group}")
    readable = _UNREADABLE.sub("_", ascii_only.encode("ascii", "ignore").decode())
    return f"{readable[: MAX_BASE - 1 - _DIGEST_LENGTH]}+{digest}"


def queue_names(base: str, partitions: int) -> list[str]:
    """A group's partition queues: ``<base>`` alone, or ``<base>.p0`` .. ``.p<n-1>``."""
    return [base] if partitions == 1 else [f"{base}.p{i}" for i in range(partitions)]


async def delete_group(transport: RabbitMQTransport, subscription: Subscription) -> None:
    """Delete a group's partition queues (with their backlog) and release marks, its
    presence queue and its lanes exchanges (see ``RabbitMQTransport.delete_group``).

    Besides the layout of this transport's ``partitions``, a layout made with another
    count is deleted too (its queues are looked for one by one): that is the group a
    member with a new count refuses to join.
    """
    assert subscription.group is not None
    base = group_base(transport.exchange_name, subscription.group, subscription.name)
    queues = [base, *queue_names(base, max(2, transport.partitions))]
    while len(queues) <= LANES and await transport._queue_exists(f"{base}.p{len(queues) - 1}"):
        queues.append(f"{base}.p{len(queues) - 1}")
    channel = await transport._channel(consuming=False)
    try:
        for queue in queues:
            await channel.queue_delete(queue)
            await channel.queue_delete(queue + RELEASED)
        await channel.queue_delete(base + PRESENCE)
        await channel.queue_delete(base + PINGS)
        await channel.queue_delete(base + LAYOUT)
        await channel.exchange_delete(f"{base}.lanes")
        await channel.exchange_delete(f"{base}.nolane")
    finally:
        await transport._close_channel(channel, transport._deadline())


class Group:
    """A group's partition queues, its consumers in this process, and their balancing.

    Each partition is a durable queue with *single active consumer*: every member
    process consumes from every partition, the broker lets one of them at a time
    receive. As the first process to subscribe would end up active everywhere, members
    count each other (each holds a consumer on a small presence queue), and every
    ``rebalance_interval`` a member active on more than ``ceil(partitions / members)``
    partitions hands the excess to whoever waits next in line: it finishes the
    deliveries in progress, closes that partition's channel and consumes again.

    AMQP does not tell a consumer it became active; its first delivery does, and it
    stays active until its channel closes. So a member learns the idle partitions it is
    active on from pings: an empty message with a ``pepperpy-ping`` header, published
    to a partition queue and acknowledged, unhandled, by whoever is active there. Each
    member pings the partitions it does not know itself active on, once per member count
    and consume (a new member, one gone, a hand-over, a reconnect), and waits a moment
    for its own pings before it counts. Counting only partitions with recent deliveries
    (before) left a first member active on every idle partition: a few busy keys never
    made it exceed its share, and all their events went to it.
    """

    def __init__(self, transport: RabbitMQTransport, base: str, first: Subscription) -> None:
        self.transport = transport
        self.base = base
        self.pattern = first.pattern
        self.group = first.group
        self.members = Members([first])
        self.queue_names = queue_names(base, transport.partitions)
        self.consumers = [
            Consumer(transport, self.members, self.pattern, self.group, self._declarer(name))
            for name in self.queue_names
        ]
        self._presence = base + PRESENCE
        self._pings = base + PINGS
        #: members of an older version (which log each ping they get) were seen last round
        self._older: int = 0
        self._older_logged = False
        #: the last count found no member of an earlier version (see _older_members)
        self._none_before = False
        #: why the broker refused the last pings (None: they went through), see _send_pings
        self._ping_refused: str | None = None
        self._control: AbstractChannel | None = None
        self._rebalancer: asyncio.Task[None] | None = None
        #: consumer -> (member count, its consumes) when this member last pinged its queue
        self._pinged: dict[Consumer, tuple[int, int]] = {}

    def _declarer(self, name: str) -> Declare:
        """Declare a partition queue on its consumer's channel, which declares it again
        when the connection comes back. The one queue of a one-partition group is bound
        there too (the lanes of a partitioned group are bound on the control channel,
        which stays open): if the group was deleted meanwhile (``delete_group``), it
        comes back bound to the exchange, not as a queue nothing routes to."""
        transport = self.transport
        single = len(self.queue_names) == 1

        async def declare(channel: AbstractChannel, pattern: str) -> AbstractQueue:
            queue = await channel.declare_queue(
                name, durable=True, arguments=transport._group_queue_arguments()
            )
            if single:
                await queue.bind(transport.exchange_name, routing_key=pattern)
            return queue

        return declare

    async def _exists(self, queue: str) -> bool:
        return await self.transport._queue_exists(queue)

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
            self._refuse(count)
        # the names cannot tell a layout another member is making at this moment: the
        # layout mark can (the broker refuses to declare it with another count)
        transport = self.transport
        assert transport._connection is not None
        refused = await transport._probe.declare(
            transport._connection, self.base + LAYOUT, {"x-max-length": count}
        )
        if refused is not None:
            made = re.search(r"current is (?:the value )?'(\d+)'", refused)
            self._refuse(count, f" ({made.group(1)})" if made else "")
        transport._declared(queue=self.base + LAYOUT)

    def _refuse(self, count: int, made: str = "") -> None:
        raise ConfigurationError(
            f"group {self.group!r} on {self.pattern!r} already exists with another"
            f" partition count{made} than {count}: every process of a group must use the"
            " same 'partitions' (or, if the group's backlog may go, delete it first:"
            f" bus.delete_group({self.pattern!r}, {self.group!r}))"
        )

    async def open(self) -> None:
        transport = self.transport
        assert transport._connection is not None
        await self._check_partitions()
        channel = self._control = await transport._channel(consuming=False)
        with contextlib.suppress(transport._aiormq.exceptions.ChannelInvalidStateError):
            underlay = await channel.get_underlay_channel()  # lost: the next join looks
            warn_broker_limit(transport, underlay.connection.server_properties)
        # declare the topology before consuming, so nothing published after this returns
        # can miss the group
        try:
            await self._declare_topology(channel)
        except transport._aiormq.exceptions.ChannelPreconditionFailed as exc:
            if "x-queue-type" not in str(exc):
                raise
            # (the layout mark agreed: the partition count is the same)
            raise ConfigurationError(
                f"group {self.group!r} on {self.pattern!r} already exists with another"
                f" queue_type than {transport.queue_type!r}: every process of a group must"
                f" use the same 'queue_type' (the broker said: {exc.args[0] if exc.args else exc})"
            ) from exc
        transport._consumers.extend(self.consumers)
        order = list(self.consumers)
        random.shuffle(order)  # spreads first picks when members start at the same time
        for consumer in order:
            await consumer.open()
        if len(self.consumers) > 1:
            self._rebalancer = asyncio.get_running_loop().create_task(self._rebalance())
        else:  # one queue: nobody to count, the channel's work is done
            self._control = None
            await transport._close_channel(channel, transport._deadline())

    async def _declare_topology(self, channel: AbstractChannel) -> None:
        """Declare the group's queues, exchanges and bindings, and join its presence."""
        transport = self.transport
        aio_pika = transport._aio_pika
        if len(self.queue_names) == 1:
            queue = await channel.declare_queue(
                self.queue_names[0], durable=True, arguments=transport._group_queue_arguments()
            )
            await queue.bind(transport.exchange_name, routing_key=self.pattern)
            transport._declared(queue=self.queue_names[0])
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
            transport._declared(exchanges=(fallback.name, lanes.name))
            # the last partition first: while another member declares the layout, one
            # with p0 and without the last is never ours half-made (_check_partitions)
            last = len(self.queue_names) - 1
            for index in (last, *range(last)):
                name = self.queue_names[index]
                queue = await channel.declare_queue(
                    name, durable=True, arguments=transport._group_queue_arguments()
                )
                transport._declared(queue=name)
                for lane in range(index, LANES, len(self.queue_names)):
                    await queue.bind(lanes, arguments={"x-match": "all", LANE_HEADER: lane})
                if index == 0:
                    await queue.bind(fallback)
            await lanes.bind(transport.exchange_name, routing_key=self.pattern)
            # .pings first (and .presence last, which tells a restore is over): a member
            # that is half-way through joining is counted on .pings only (_older_members)
            for name in (self._pings, self._presence):
                presence = await channel.declare_queue(
                    name,
                    auto_delete=True,
                    arguments={"x-expires": int(_config.PRESENCE_EXPIRY * 1000)},
                )
                transport._declared(queue=name)
                await presence.consume(_ignore, no_ack=True)

    async def close(self) -> None:
        """Leave the group: finish deliveries in progress, then close this member's channels.

        The broker then hands each partition queue to the next waiting member (single
        active consumer) with the prefetched, unstarted messages back in it, in order;
        the presence queue's count drops, so the others rebalance for one member less.
        """
        for consumer in self.consumers:
            consumer.retire()  # a handover under way cannot consume again
        try:
            await self.stop_rebalancing()
            await asyncio.gather(*(consumer.finish_running() for consumer in self.consumers))
        finally:
            # cancelled too (a timeout around unsubscribe while a handler runs): left
            # open, the retired consumers would stay the partitions' active consumers,
            # holding their messages unstarted, and no other member would get them
            await settled(self._close_channels())

    async def _close_channels(self) -> None:
        deadline = self.transport._deadline()  # wait so long for the broker at most
        await asyncio.gather(*(consumer.close_channel(deadline) for consumer in self.consumers))
        control, self._control = self._control, None
        if control is not None:
            await self.transport._close_channel(control, deadline)

    def abandon(self) -> None:
        """Forget the rebalancing task (its loop ended)."""
        self._rebalancer = self._control = None

    async def stop_rebalancing(self) -> None:
        """Cancel the rebalancing task and wait until it (and any handover it runs) ended."""
        rebalancer, self._rebalancer = self._rebalancer, None
        if rebalancer is not None:
            # close() may run in the cleanup of a cancelled task, whose count stays up:
            # only a cancellation that comes while we wait is the caller's; the
            # rebalancer's own, which awaiting it raises, is not
            since = cancelling()
            rebalancer.cancel()
            try:
                await rebalancer
            except asyncio.CancelledError:
                if cancelled_by_caller(since):
                    raise
            except Exception:
                logger.exception("the rebalancing task of %s had failed", self.base)

    async def _rebalance(self) -> None:
        interval = self.transport.rebalance_interval
        while True:
            # stop_rebalancing() cancelled us, and a call of the last round lost the
            # CancelledError: aiormq waits for a channel's CloseOk (a handover) with
            # asyncio.wait_for, which on CPython 3.11 returns when the cancellation
            # arrives just as the answer does. Going on would rebalance for ever and
            # close() would wait for us for ever. This task never uncancels itself.
            resume_cancellation()
            await asyncio.sleep(interval * random.uniform(0.8, 1.2))
            try:
                members = await self._count_members()
            except Exception as exc:  # broker away: robust connection reconnects; retry
                logger.debug("could not count the members of %s: %s", self.base, exc)
                continue
            except asyncio.CancelledError:
                if cancelled_by_caller():
                    raise
                # aiormq fails the requests of a connection that died this way
                logger.debug("could not count the members of %s: connection lost", self.base)
                continue
            if members is None or members <= 1:  # None: no presence queue (restoring)
                continue
            try:
                await self._ping(members, min(interval / 4, PING_WAIT))
            except Exception as exc:  # the control channel away: rebalance on what we know
                logger.debug("could not ping the partitions of %s: %s", self.base, exc)
            except asyncio.CancelledError:
                if cancelled_by_caller():
                    raise
                logger.debug("could not ping the partitions of %s: connection lost", self.base)
                continue
            active = [c for c in self.consumers if c.known_active]
            share = math.ceil(len(self.consumers) / members)
            if len(active) > share:
                random.shuffle(active)
                active.sort(key=lambda consumer: consumer.busy)  # idle ones move first
                excess = active[: len(active) - share]
                results = await asyncio.gather(
                    *(consumer.rejoin() for consumer in excess), return_exceptions=True
                )
                for result in results:
                    if isinstance(result, Exception):
                        logger.warning(
                            "could not hand a partition of %s over: %s", self.base, result
                        )

    async def _ping(self, members: int, wait: float) -> None:
        """Ping the partitions this member does not know itself active on (not pinged for
        this member count and consume yet), then wait up to ``wait`` seconds for them."""
        control = self._control
        unknown = [
            consumer
            for consumer in self.consumers
            if consumer.queue_name is not None
            and not consumer.known_active
            and self._pinged.get(consumer) != (members, consumer.consumes)
        ]
        if control is None or not unknown:
            return
        if await self._older_members(members):  # they would log each ping: none for now
            return
        if not await self._send_pings(members, unknown):
            return
        loop = asyncio.get_running_loop()
        until = loop.time() + wait
        while loop.time() < until and not all(c.known_active for c in unknown):  # noqa: ASYNC110
            await asyncio.sleep(0.02)  # (nothing to wait on: a delivery sets no event)

    async def _send_pings(self, members: int, unknown: list[Consumer]) -> bool:
        """Send a ping to each of ``unknown``'s partitions; False if the broker refused.

        Through the group's lanes exchange (the ping's lane is its partition's), which
        every member may write to (binding the partitions to it needs that), where the
        default exchange needs write permission on ``amq.default``, which a user limited
        to the application's names lacks. They go on a channel of their own in confirm
        mode, one confirm at a time: a refusal (403, or 404 for a group deleted meanwhile)
        closes only that channel, and nothing is sent on it after. Sent on the control
        channel without confirms, a refused ping closed the channel that holds the
        presence consumers, and the pings after it hit the closed channel, which the
        broker answers by closing the whole connection (``CHANNEL_ERROR``): every member
        reconnected about once a second, returning its prefetched messages each time.
        """
        transport = self.transport
        errors = transport._aiormq.exceptions
        underlay = getattr(transport._connection, "transport", None)
        if underlay is None:  # away, reconnecting: the next round pings
            return False
        channel = await underlay.connection.channel(publisher_confirms=True)
        try:
            # bounded: a broker holding publishers back (a memory or disk alarm) confirms
            # nothing, and the next round tries again
            async with asyncio.timeout(transport.connect_timeout):
                await self._publish_pings(channel, members, unknown)
        except errors.AMQPChannelError as exc:
            if self._ping_refused is None:
                logger.warning(
                    "cannot ping the partitions of group %r on %r: the broker refused it"
                    " (%s); until it accepts, this member learns the partitions it is"
                    " active on from their events only, so an idle partition may stay with"
                    " it (check the permissions of the transport's user on %s.lanes)",
                    self.group,
                    self.pattern,
                    exc.args[0] if exc.args else repr(exc),
                    self.base,
                )
            self._ping_refused = str(exc)
            return False
        finally:
            await quietly(
                channel.close(), "closing the ping channel", logger, deadline=transport._deadline()
            )
        if self._ping_refused is not None:
            self._ping_refused = None
            logger.info("group %r on %r: pings go through again", self.group, self.pattern)
        return True

    async def _publish_pings(
        self, channel: RawChannel, members: int, unknown: list[Consumer]
    ) -> None:
        """Publish the pings of :meth:`_send_pings` on ``channel``, one confirm at a time."""
        for consumer in unknown:
            properties = self.transport._aiormq.spec.Basic.Properties(
                headers={PING_HEADER: True, LANE_HEADER: self.consumers.index(consumer)},
                expiration=str(int(PING_EXPIRY * 1000)),
            )
            await channel.basic_publish(
                b"", exchange=f"{self.base}.lanes", routing_key="", properties=properties
            )
            self._pinged[consumer] = (members, consumer.consumes)

    async def _older_members(self, members: int) -> bool:
        """True while members of an older version run (a rolling upgrade): they answer no
        ping, and log each one they get as a malformed message.

        Members of this version consume ``.pings``, then ``.presence``, so ``.pings`` has
        fewer consumers when some member does not (it takes two rounds in a row to log
        it). ``.pings`` is counted between two counts of ``.presence`` (``members``, then
        one after it): a member that joined or left meanwhile makes them differ, and the
        round pings nothing. A member half-way through joining (on ``.pings``, not yet on
        ``.presence``) can still make an older member look like one of ours within one
        round, never in two: so the answer is "none" only when this round and the one
        before it found none (it pinged an older member now and then under load).
        Members of versions before ``.presence`` hold the ``.members`` queue. Logs one
        INFO when they are seen and one when they are gone.
        """
        transport = self.transport
        aware = await transport._queue_consumers(self._pings) or 0
        if await self._count_members() != members:  # changing: count again next round
            self._none_before = False
            return True
        older = max(0, members - aware)
        if not older:
            older = await transport._queue_consumers(self.base + OLD_PRESENCE) or 0
        before, self._older = self._older, older
        if older and before and not self._older_logged:
            self._older_logged = True
            logger.info(
                "group %r on %r: %d member(s) of an earlier version of pepperpy-event run,"
                " which may take a ping for a malformed message; this member pings no"
                " partition until they are gone (a rolling upgrade), so an idle partition"
                " may stay with the member active on it",
                self.group,
                self.pattern,
                older,
            )
        elif not older and self._older_logged:
            self._older_logged = False
            logger.info("group %r on %r: every member now answers pings", self.group, self.pattern)
        none_before, self._none_before = self._none_before, not older
        return bool(older) or not none_before

    async def _count_members(self) -> int | None:
        """The group's member processes (its presence queue's consumers); None while
        that queue is missing.

        The presence queue is auto-delete: it is gone from the moment the last member's
        connection dropped until a member declares it again, which its robust connection
        does last when it restores the control channel (after the group's exchanges,
        queues and bindings). So the count asks on the transport's probe channel, whose
        404 harms nothing. Asked on the control channel, a count that fell inside that
        restore (likely under a backlog, when restoring is slow) got the 404 there and
        failed the restore: aio-pika dropped the connection and reconnected, and the next
        restore could fail the same way (a reconnect storm, each round returning every
        partition's prefetched messages to its queue).
        """
        return await self.transport._queue_consumers(self._presence)


async def _ignore(message: AbstractIncomingMessage) -> None:
    return None
