"""Consuming one queue: per-key lanes, acknowledgement after delivery, coalesced acks."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, cast

from ..._bus_logging import log_fields
from ..._errors import EventError
from ..._event import Event
from ..._handlers import start
from ..._patterns import matches
from ..base import NotDelivered, Subscription, cancelled_by_caller, cancelling, quietly
from ._acks import Acks
from ._config import CONTROL_PREFIX, LANE_HEADER, PING_HEADER
from ._deliveries import give_up
from ._handover import Grace, mark_released, until_heard

if TYPE_CHECKING:
    from aio_pika.abc import AbstractChannel, AbstractQueue
    from aiormq.abc import DeliveredMessage
    from pamqp.commands import Basic

    from ._transport import RabbitMQTransport

logger = logging.getLogger("pepperpy.event.transports.rabbitmq")

#: most message ids a consumer remembers as its own after its channel died
OURS_KEPT = 1024


class Members:
    """The subscriptions of one process sharing a consumer; picks one per event."""

    __slots__ = ("subscriptions", "_turn")

    def __init__(self, subscriptions: list[Subscription]) -> None:
        self.subscriptions = subscriptions
        self._turn = itertools.count()

    def add(self, subscription: Subscription) -> None:
        self.subscriptions.append(subscription)

    def remove(self, subscription: Subscription) -> None:
        self.subscriptions.remove(subscription)

    def pick(self) -> Subscription | None:
        """The next subscription in turn that is not being removed; None if all are."""
        subs = self.subscriptions
        if len(subs) == 1:
            return None if subs[0].removed else subs[0]
        for _ in range(len(subs)):
            sub = subs[next(self._turn) % len(subs)]
            if not sub.removed:
                return sub
        return None


Declare = Callable[["AbstractChannel", str], Awaitable["AbstractQueue"]]


class Consumer:
    """One AMQP consumer on one queue over its own channel.

    Events with a ``partitionkey`` are handled one after another per key (a *lane*);
    others concurrently, up to the channel's prefetch. Each message is acknowledged
    after delivery returned and negatively acknowledged (requeued) if delivery raised.

    Deliveries run in tasks of our own, not in the task aiormq starts per message: aiormq
    cancels those when the connection drops, which would cut a handler off mid-run. A
    delivery in progress when the connection drops therefore finishes; its
    acknowledgement cannot reach the broker any more (the channel it came on is gone),
    so the broker delivers the event again: at-least-once.
    """

    def __init__(
        self,
        transport: RabbitMQTransport,
        members: Members,
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
        self._acks: Acks | None = None
        self._generation = 0
        self._paused = False
        #: closed for good (its subscription left, or the transport closed): never reopens
        self.retired = False
        #: paused because every member of its subscription was being removed
        self.stalled = False
        self._lanes: dict[str, deque[tuple[Event, int, Acks]]] = {}
        #: our delivery tasks (a message's, or a key's lane), started or about to start
        self._running: set[asyncio.Future[Any]] = set()
        #: delivery tag -> message id of messages received but not started (paused, or
        #: waiting in a lane): a graceful close returns them unstarted
        self._unstarted: dict[int, str | None] = {}
        #: ids of messages of a channel that died which no other member can be running:
        #: their handler ended here (the acknowledgement may have been lost), or they were
        #: received here and never started; their redelivery waits no grace
        self._ours: OrderedDict[str, None] = OrderedDict()
        #: basic.consumes so far (a reconnect's too): each puts it at the back of the line
        self.consumes = 0
        self.queue_name: str | None = None  # known once open() declared it

    async def open(self) -> None:
        """Open a channel, declare the queue and start consuming (back of the line).

        Does nothing once the consumer retired (see :meth:`retire`): a handover
        (``rejoin``) still under way when its group closed must not consume again.
        """
        if self.retired:
            return
        channel = await self.transport._channel()
        if self.retired:
            await self.transport._close_channel(channel, self.transport._deadline())
            return
        try:
            queue = await self._declare(channel, self.pattern)
        except BaseException:  # left open, the channel would outlive the subscription
            await self.transport._close_channel(channel, self.transport._deadline())
            raise
        self.queue_name = queue.name
        self._generation += 1
        generation = self._generation
        self._channel = channel
        self._paused = self.stalled = False

        async def on_message(message: DeliveredMessage) -> None:
            if generation != self._generation:
                return  # delivered on a channel we handed over: the broker requeued it
            acks = self._acks
            if acks is None or acks.channel is not message.channel:
                if message.channel.is_closed:
                    return  # from before a reconnect: the broker delivers it again
                acks = self._acks = Acks(message.channel)  # first message, or reconnected
                self._unstarted.clear()  # tags of a channel that is gone
            acks.outstanding.add(_tag(message))
            if _is_control(message, self.queue_name):  # a ping told us we are active here
                acks.ack(_tag(message))
                return
            if not acks.evented:
                acks.evented = True
                self._took_over(acks, message)
            if self._paused:  # left unacknowledged: requeued, unstarted, when the channel closes
                self._unstarted[_tag(message)] = message.header.properties.message_id
                return
            await self._on_message(message, acks)

        # consume on the raw channel: aio-pika would wrap every message in an object and
        # one more task; a reconnect restores the queue and bindings, and then calls this
        async def consume(*_: Any) -> None:
            underlay = await channel.get_underlay_channel()
            self._forget_channel(underlay)
            self.consumes += 1
            await underlay.basic_consume(queue.name, on_message, no_ack=False)

        await consume()
        channel.reopen_callbacks.add(consume)
        if self.retired:  # retired while we were subscribing: undo it
            await self.close_channel()

    def _forget_channel(self, underlay: Any) -> None:
        """Drop what belongs to a channel other than ``underlay`` (the one consuming now).

        The acknowledger of the last message keeps its aiormq channel, and through it the
        whole aiormq connection (every channel of it, their queues and futures). Left
        until the next message, a consumer that gets none after a reconnect (a quiet key
        range, a partition this member is only standby for) kept one dead connection
        alive per reconnect: about 185 KB each, for as long as the consumer lived. The
        delivery tags waiting unstarted belong to that channel too. Deliveries still
        running hold their own reference, until they end.
        """
        acks = self._acks
        if acks is not None and acks.channel is not underlay:
            self._acks = None
            if self.group is not None:
                # handled here, their acknowledgement perhaps lost with the channel
                self._remember_ours(acks.handled)
                # received here and never started, and not held for another member's
                # sake (whose handler may still run them): nobody else runs them either
                if acks.grace is None or acks.grace.clear:
                    self._remember_ours(i for i in self._unstarted.values() if i)
            self._unstarted.clear()
            if acks.grace is not None:
                acks.grace.end()

    def _remember_ours(self, message_ids: Iterable[str]) -> None:
        ours = self._ours
        for message_id in message_ids:
            ours[message_id] = None
        while len(ours) > OURS_KEPT:
            ours.popitem(last=False)

    def _took_over(self, acks: Acks, message: DeliveredMessage) -> None:
        """The first delivery on a channel: a group's partition became ours. Look for a
        release mark; a redelivery first means the member before had not acknowledged
        everything: without a mark, the grace starts (see ``_handover``)."""
        grace = self.transport.handover_grace
        if self.group is None or not grace or self.queue_name is None:
            return
        delivery = cast("Basic.Deliver", message.delivery)
        acks.grace = Grace(self.transport, self.queue_name, grace, bool(delivery.redelivered))

    @property
    def known_active(self) -> bool:
        """This consumer received a message (an event or a ping) on the channel consuming
        now, and may start more: with single active consumer, it stays the queue's active
        consumer until that channel closes, busy or idle."""
        acks = self._acks
        return (
            acks is not None  # dropped when another channel consumes (_forget_channel)
            and not acks.channel.is_closed
            and self._channel is not None
            and not self._paused
        )

    @property
    def busy(self) -> bool:
        """A delivery of this consumer is in progress or waits in a lane."""
        return bool(self._running)

    def retire(self) -> None:
        """Stop for good: start no further deliveries and never consume again."""
        self.retired = True
        self.pause()

    def pause(self) -> None:
        """Start no further deliveries (the unstarted ones return to the queue later)."""
        self._paused = True
        if self._acks is not None and self._acks.grace is not None:
            self._acks.grace.end()  # what waits for it returns unstarted

    async def finish_running(self) -> None:
        """Wait for the deliveries in progress and for their acknowledgements.

        Not bounded: a handler takes as long as it takes, connection or not (only its
        acknowledgement needs the connection, and a lost one is harmless).
        """
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
        if not self.transport._closed and not self.retired:
            await self.open()

    async def close_channel(self, deadline: float | None = None) -> None:
        """Close this consumer's channel; its unacknowledged messages return to the queue.

        Call it once the deliveries in progress finished (:meth:`finish_running`): the
        messages still unacknowledged then were never started, and the transport
        remembers them as such, so that the quorum queue counting their return as a
        delivery does not bring them closer to ``max_deliveries``. Waits for the broker
        until ``deadline`` (loop time; default: ``connect_timeout`` from now) and never
        raises: a channel of a lost connection is gone already.
        """
        channel, self._channel = self._channel, None
        self._lanes.clear()
        unstarted, self._unstarted = self._unstarted, {}
        if self.group is not None and self.queue_name is not None and unstarted:
            ids = [message_id for message_id in unstarted.values() if message_id]
            self.transport._returns.returned(self.queue_name, ids)
        if channel is not None:
            if deadline is None:
                deadline = self.transport._deadline()
            grace = self._acks.grace if self._acks is not None else None
            if grace is not None:  # the partition was ours: did the one before leave in order?
                await quietly(
                    grace.looked(), "looking for a release mark", logger, deadline=deadline
                )
            if self._released_in_order():
                assert self.queue_name is not None
                await quietly(
                    mark_released(channel, self.queue_name),
                    f"marking {self.queue_name} released",
                    logger,
                    deadline=deadline,
                )
            await self.transport._close_channel(channel, deadline)

    def _released_in_order(self) -> bool:
        """True when the next member of this group partition needs no grace: the partition
        was ours on this channel (we received from it), nothing of ours runs, and what the
        member before us may have had running is over (see ``Grace.clear``)."""
        acks = self._acks
        return (
            acks is not None
            and acks.grace is not None
            and acks.grace.clear
            and not self._running
            and self.transport._connected()
        )

    async def _on_message(self, message: DeliveredMessage, acks: Acks) -> None:
        """Decide what a received message needs; start its delivery in a task of ours.

        Runs in aiormq's task for the message (cancelled if the connection drops, which
        only costs what the broker redelivers anyway); the handler never does.
        """
        delivery = cast("Basic.Deliver", message.delivery)
        tag = _tag(message)
        try:
            event = Event.from_json(message.body)
        except Exception as exc:  # whatever the decoder raises: a poison message
            # left unsettled, it would hold a prefetch slot (and its key's partition)
            # until the channel closed, and come back to do it again
            logger.error(
                "dropping a message on %r that is not a CloudEvents JSON document: %s",
                delivery.routing_key,
                exc,
                exc_info=not isinstance(exc, EventError),  # unexpected: say where
            )
            await acks.settled(tag, acks.channel.basic_reject(tag, requeue=False))
            return
        if delivery.routing_key != event.type and not matches(self.pattern, event.type):
            acks.ack(tag)  # routed by a key that disagrees with its type
            return
        limit = self.transport.max_deliveries
        if limit and delivery.redelivered:
            deliveries = _delivery_count(message.header.properties.headers)
            if self.queue_name is not None:  # returns of ours it never started do not count
                free = self.transport._returns.free(
                    self.queue_name, message.header.properties.message_id
                )
                deliveries = max(1, deliveries - free)
            if deliveries > limit:
                try:  # counted: the deliveries before this one, which no handler gets
                    await give_up(self.transport, event, deliveries - 1, self.group)
                except Exception:
                    logger.exception("could not dead-letter %s (%s)", event.type, event.id)
                    await acks.settled(tag, acks.channel.basic_nack(tag, requeue=True))
                    return
                acks.ack(tag)
                return
        key = event.metadata.get("partitionkey")
        if key is None:
            self._spawn(self._run(event, tag, acks))
            return
        key = str(key)
        lane = self._lanes.get(key)
        if lane is not None:  # behind the key's event in progress here, whatever came first
            lane.append((event, tag, acks))
            self._unstarted[tag] = message.header.properties.message_id
            return
        self._lanes[key] = lane = deque()
        grace = acks.grace
        if grace is not None and grace.over.done():
            grace = None
        held = False
        if grace is not None:  # it waits for the grace (or its check), unstarted
            self._unstarted[tag] = message.header.properties.message_id
            # a message of ours from before the channel died runs nowhere else: no wait
            ours = event.id in self._ours
            if ours:
                del self._ours[event.id]
            held = bool(delivery.redelivered) and not ours
        self._spawn(self._run_lane(key, lane, event, tag, acks, grace, held))

    def _spawn(self, delivery: Awaitable[None]) -> None:
        task = start(delivery)
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _run_lane(
        self,
        key: str,
        lane: deque[tuple[Event, int, Acks]],
        event: Event,
        tag: int,
        acks: Acks,
        grace: Grace | None = None,
        held: bool = False,
    ) -> None:
        """Deliver ``event``, then the events queued behind it with the same key.

        Only a cancellation of this task counts as a shutdown: ``since`` is its count when
        it started. A handler may catch the cancellation of this task and return; the
        count stays up (and would take every later ``CancelledError`` of a handler for a
        shutdown, leaving its message unacknowledged on a channel that stays open), so
        the lane then stops: the events queued in it go back to the queue (requeued,
        delivered again in a task that was not cancelled) and the task ends as
        cancelled, as a shutdown that cancels its tasks expects.
        """
        since = cancelling()
        try:
            if grace is not None:  # taken over from another member (see _handover)
                await grace.wait(held, key)
            await self._run(event, tag, acks, since)
            while lane and not self._paused:
                if cancelled_by_caller(since):  # a handler swallowed our cancellation
                    await self._requeue(lane)
                    raise asyncio.CancelledError
                await self._run(*lane.popleft(), since)
        finally:
            if self._lanes.get(key) is lane:
                del self._lanes[key]

    async def _requeue(self, lane: deque[tuple[Event, int, Acks]]) -> None:
        """Return the unstarted events of ``lane`` to their queue, uncounted, at once."""
        held = list(lane)
        lane.clear()
        ids = [self._unstarted.pop(tag, None) for _, tag, _ in held]
        if self.group is not None and self.queue_name is not None:  # as close_channel does
            self.transport._returns.returned(self.queue_name, [i for i in ids if i])
        for _, tag, acks in held:
            await acks.settled(tag, acks.channel.basic_nack(tag, requeue=True))

    async def _run(self, event: Event, tag: int, acks: Acks, since: int = 0) -> None:
        if self.group is not None:  # not while the broker may have handed the partition on
            await until_heard(acks.channel, lambda: self._paused)
        if acks.channel.is_closed:  # its connection dropped: the broker gives it again
            if self.group is not None and (acks.grace is None or acks.grace.clear):
                self._remember_ours((event.id,))  # received here, started nowhere
            return
        if self._paused:  # paused after it arrived, before its task ran: not started
            self._unstarted[tag] = event.id
            return
        member = self.members.pick()
        if member is None:  # being unsubscribed (perhaps by its own handler): not started
            self._not_started(tag, event)
            return
        self._unstarted.pop(tag, None)
        try:
            await member.deliver(event)
        except NotDelivered:
            self._not_started(tag, event)
            return
        except Exception:
            logger.exception(
                "delivery of %s (%s) failed; requeueing it",
                event.type,
                event.id,
                extra=log_fields(
                    "delivery_failed", event_id=event.id, event_type=event.type, group=self.group
                ),
            )
            await self._failed(tag, acks)
            return
        except asyncio.CancelledError:
            if cancelled_by_caller(since):
                raise  # shutdown: the closing channel returns the message to its queue
            # the handler awaited something cancelled: a failed delivery
            logger.error("delivery of %s (%s) was cancelled; requeueing it", event.type, event.id)
            await self._failed(tag, acks)
            return
        acks.ack(tag)
        if self.group is not None and self.queue_name is not None:
            self.transport._returns.settled(self.queue_name, event.id)
            if acks.channel.is_closed:  # the acknowledgement cannot leave any more
                self._remember_ours((event.id,))
            else:
                acks.handled.append(event.id)

    @staticmethod
    async def _failed(tag: int, acks: Acks) -> None:
        """Requeue a message whose delivery failed, as a failed delivery: with
        ``basic.reject``, which every quorum queue counts (``x-delivery-count``). Since
        RabbitMQ 4.3 a ``basic.nack`` no longer counts (only ``x-acquired-count`` grows):
        a delivery that kept failing was requeued for ever, never reaching
        ``max_deliveries``. Returns of unstarted messages keep ``basic.nack``."""
        await acks.settled(tag, acks.channel.basic_reject(tag, requeue=True))

    def _not_started(self, tag: int, event: Event) -> None:
        """Leave a message our removed subscription did not start unacknowledged.

        It returns to the queue (for a group: to the next member, uncounted, see
        close_channel) when the unsubscription closes the channel; an ungrouped queue is
        deleted with it. Pausing keeps the key's lane from starting what follows it.
        """
        self.pause()
        self.stalled = True
        self._unstarted[tag] = event.id


#: queues on which a control message of a later version was logged (once each)
_UNKNOWN_CONTROL_LOGGED: set[str | None] = set()


def _is_control(message: DeliveredMessage, queue: str | None) -> bool:
    """A message of the transport's own protocol, never an event: a ping, or an empty
    message with a ``pepperpy-`` header this version does not know (a control message
    of a later version, met during a rolling upgrade). Such a message is acknowledged
    unhandled; the unknown kind is logged once per queue at INFO, where it was an ERROR
    per message ("not a CloudEvents JSON document"), as pings were for the versions
    before them."""
    headers = message.header.properties.headers
    if not headers:
        return False
    if PING_HEADER in headers:
        return True
    if message.body or not any(
        isinstance(name, str) and name.startswith(CONTROL_PREFIX) and name != LANE_HEADER
        for name in headers
    ):
        return False
    if queue not in _UNKNOWN_CONTROL_LOGGED:
        _UNKNOWN_CONTROL_LOGGED.add(queue)
        logger.info(
            "%s: acknowledged a control message of a later version of pepperpy-event"
            " (headers %s) without handling it; further ones on this queue are not logged",
            queue,
            sorted(headers),
        )
    return True


def _tag(message: DeliveredMessage) -> int:
    return cast(int, cast("Basic.Deliver", message.delivery).delivery_tag)


def _delivery_count(headers: dict[str, Any] | None) -> int:
    """How many times a redelivered message was delivered (quorum queues count them)."""
    count = (headers or {}).get("x-delivery-count")
    if isinstance(count, int) and not isinstance(count, bool):
        return count + 1
    return 2  # redelivered at least once
