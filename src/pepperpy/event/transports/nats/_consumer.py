"""The JetStream consumers behind one subscription, and the local members they feed.

A group subscription owns durable push consumers shared by every member process (one
for unkeyed events, one per key lane); their deliver subjects are subscribed with a NATS
queue group, so each message reaches one process. An ungrouped subscription owns one
consumer that JetStream deletes ``inactive_threshold`` after nobody listens any more
(the process exited), so it never keeps a backlog.

Messages are acknowledged only after ``Subscription.deliver`` returned. Messages that
carry a partition key are handed over one at a time per key (later ones wait in a
per-key queue); other messages run concurrently, up to ``max_ack_pending``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ..._bus_logging import log_fields
from ..._errors import ClosedError, ConfigurationError, SerializationError
from ..._event import Event
from ..._handlers import start
from ..._loops import settled
from ..base import NotDelivered, Subscription, cancelled_by_caller, cancelling, quietly
from ._options import NatsOptions
from ._subjects import (
    ANY_LANE,
    DELIVER_ROOT,
    UNKEYED_LANE,
    SubjectFilter,
    subject_filter,
    topic_of,
)
from ._waits import (
    consumer_settings,
    report_changed_pending,
    report_changed_waits,
    same_wait,
    take_wait,
)

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg
    from nats.aio.subscription import Subscription as NatsSubscription
    from nats.js import JetStreamContext

__all__ = ["Consumer", "DeadLetterHook", "Lane", "message_identity"]

logger = logging.getLogger("pepperpy.event.transports.nats")

#: the CloudEvents partitioning extension, where the bus puts ``key``
PARTITION_KEY = "partitionkey"
#: deliver subjects of shared (group) consumers live under this root

#: ``(event, reason, deliveries, group, message identity)`` -> publishes ``event`` to its
#: dead-letter topic
DeadLetterHook = Callable[[Event, str, int, "str | None", str], Awaitable[None]]


def parse_reply(reply: str) -> tuple[str, int, int]:
    """``(consumer, times delivered, stream sequence)`` from a JetStream ack subject.

    ``$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>``, or with
    domain and account hash (``$JS.ACK.<domain>.<hash>.<stream>...``) on newer servers.
    Raises ValueError for anything else (a message JetStream did not deliver).
    """
    tokens = reply.split(".")
    if tokens[:2] != ["$JS", "ACK"] or not (len(tokens) == 9 or len(tokens) >= 11):
        raise ValueError(f"not a JetStream ack subject: {reply!r}")
    at = 3 if len(tokens) == 9 else 5
    return tokens[at], int(tokens[at + 1]), int(tokens[at + 2])


def message_identity(reply: str) -> str:
    """``<consumer>.<stream sequence>.<stored at, ns>`` from a JetStream ack subject.

    Names one stored message as one consumer sees it, whichever delivery this is; the
    time tells apart the messages of a stream recreated under the same name.
    """
    tokens = reply.split(".")
    at = 3 if len(tokens) == 9 else 5
    return f"{tokens[at]}.{tokens[at + 2]}.{tokens[at + 4]}"


def stored_at(reply: str) -> datetime:
    """When JetStream stored the message with this ack subject (see :func:`parse_reply`)."""
    tokens = reply.split(".")
    nanoseconds = int(tokens[7] if len(tokens) == 9 else tokens[9])
    return datetime.fromtimestamp(nanoseconds / 1e9, UTC)


@dataclass(frozen=True)
class Lane:
    """One JetStream consumer behind a subscription: a filter, an in-flight limit and
    the seconds JetStream waits for an acknowledgement before it redelivers."""

    name: str
    subject_filter: SubjectFilter
    max_ack_pending: int
    deliver_subject: str
    ack_wait: float


class Consumer:
    """The JetStream consumers of one subscription (or group) and its local members.

    A group gets one consumer for unkeyed events (many in flight) and one per key lane
    with ``max_ack_pending=1``, so events with one key are handled strictly in order even
    across processes and redeliveries. An ungrouped subscription gets one consumer over
    every lane; in-process, events with one key still run one after the other.
    """

    def __init__(
        self,
        *,
        nc: Client,
        js: JetStreamContext,
        stream: str,
        name: str,
        group: str | None,
        pattern: str,
        prefix: str,
        options: NatsOptions,
        dead_letter: DeadLetterHook,
        waits_changed: Callable[[], None] = lambda: None,
    ) -> None:
        from nats.errors import Error as NatsError

        self.name = name
        self.group = group
        self.members: list[Subscription] = []
        self._not_started_msgs: list[Msg] = []  # see _not_started
        self._nats_error: type[Exception] = NatsError
        self._nc = nc
        self._js = js
        self._stream = stream
        self._prefix_length = len(prefix)
        self._options = options
        self._dead_letter = dead_letter
        self._waits_changed = waits_changed
        #: tells this member's notices of changed waits from the other members' (see
        #: _tell_members)
        self._member_id = secrets.token_hex(8)
        #: a group's members hear of changed waits here; None for ungrouped ones
        self._waits_subject: str | None = None
        if group is not None:
            root = f"{DELIVER_ROOT}.{stream}.{name}"
            self._waits_subject = f"{root}.waits"
            lanes = [
                Lane(
                    name,
                    subject_filter(prefix, UNKEYED_LANE, pattern),
                    options.max_ack_pending,
                    f"{root}.{UNKEYED_LANE}",
                    options.ack_wait,
                )
            ]
            lanes += [
                Lane(
                    f"{name}_k{i}",
                    subject_filter(prefix, str(i), pattern),
                    1,
                    f"{root}.{i}",
                    options.lane_wait,
                )
                for i in range(options.partitions)
            ]
        else:
            lanes = [
                Lane(
                    name,
                    subject_filter(prefix, ANY_LANE, pattern),
                    options.max_ack_pending,
                    nc.new_inbox(),
                    options.ack_wait,
                )
            ]
        self.lanes = tuple(lanes)
        #: per JetStream consumer, its ack_wait as far as this member knows: its own,
        #: until another member of the group changes it (see _on_waits). A message
        #: going unreported for a third of it gets an in-progress ack
        self._waits = {lane.name: lane.ack_wait for lane in lanes}
        #: per JetStream consumer, when a redelivery last made this member read its wait
        self._wait_checked: dict[str, float] = {}
        self._filter = lanes[0].subject_filter
        self._subs: list[NatsSubscription] = []
        self._turn = 0
        self._created_at = datetime.now(UTC)
        #: per JetStream consumer, the stream's last sequence and the server's time when
        #: it was created: where it starts (to resume from if it saw nothing yet)
        self._origin: dict[str, tuple[int, datetime]] = {}
        #: the ack subject of the last first delivery per JetStream consumer: the newest
        #: event it received (to resume from)
        self._last_reply: dict[str, str] = {}
        #: received and not yet settled: id(msg) -> [msg, when last reported alive,
        #: seconds after which to report it again, name of its JetStream consumer]
        self._unsettled: dict[int, list[Any]] = {}
        #: partition key -> messages waiting for the one in progress with that key
        self._keyed: dict[str, deque[tuple[Msg, Event]]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- lifecycle --------------------------------------------------------------------

    def _config(self, lane: Lane, **resume: Any) -> Any:
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        config = ConsumerConfig(
            name=lane.name,
            durable_name=lane.name,
            deliver_subject=lane.deliver_subject,
            deliver_policy=DeliverPolicy.NEW,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self._waits[lane.name],
            max_deliver=-1,  # the poison-message limit is enforced here, with a dead letter
            max_ack_pending=lane.max_ack_pending,
            filter_subject=lane.subject_filter.subject,
        )
        if self.group is not None:
            config.deliver_group = self.name
            config.description = f"pepperpy-event group {self.group!r}"
        else:
            config.inactive_threshold = self._options.inactive_threshold
            config.description = "pepperpy-event subscriber (removed when idle)"
        if resume.get("opt_start_seq") is not None:
            config.deliver_policy = DeliverPolicy.BY_START_SEQUENCE
            config.opt_start_seq = resume["opt_start_seq"]
        elif resume.get("opt_start_time") is not None:
            config.deliver_policy = DeliverPolicy.BY_START_TIME
            config.opt_start_time = resume["opt_start_time"]
        return config

    async def start(self) -> None:
        """Listen on the deliver subjects, then create (or join) the consumers.

        Each deliver subject gets its own subscription: JetStream only sees a queue
        group as interest when it subscribes to the exact subject, not a wildcard.
        """
        queue = self.name if self.group is not None else ""
        for lane in self.lanes:
            sub = await self._nc.subscribe(lane.deliver_subject, queue=queue, cb=self._on_message)
            self._subs.append(sub)
        if self._waits_subject is not None:
            self._subs.append(await self._nc.subscribe(self._waits_subject, cb=self._on_waits))
        await self._nc.flush()
        if self.group is None:
            await asyncio.gather(*(self._create(lane) for lane in self.lanes))
            return
        # a group's consumers may exist, made by another member with other waits: the
        # members still running must report their messages at a third of the new waits
        # before JetStream applies a shorter one, and may stop doing so once it applies
        # a longer one
        settings = await asyncio.gather(
            *(consumer_settings(self._js, self._stream, lane.name) for lane in self.lanes)
        )
        before = [wait for wait, _ in settings]
        changed = [
            (lane, was)
            for lane, was in zip(self.lanes, before, strict=True)
            if was is not None and not same_wait(was, lane.ack_wait)
        ]
        shorter = {lane.name: lane.ack_wait for lane, was in changed if lane.ack_wait < was}
        if shorter:
            await self._tell_members(shorter, answered=True)
        joined = await asyncio.gather(*(self._create(lane) for lane in self.lanes))
        longer = {lane.name: lane.ack_wait for lane, was in changed if lane.ack_wait > was}
        if longer:
            await self._tell_members(longer, answered=False)
        report_changed_waits(
            self.group,
            self._stream,
            [
                (self._wait_option(lane), was, lane.ack_wait)
                for lane, first, then in zip(self.lanes, before, joined, strict=True)
                if (was := first if first is not None else then) is not None
                and not same_wait(was, lane.ack_wait)
            ],
        )
        pending = settings[0][1]  # the unkeyed events' consumer (the lanes' is always 1)
        if pending is not None and pending != self.lanes[0].max_ack_pending:
            report_changed_pending(self.group, self._stream, pending, self.lanes[0].max_ack_pending)

    async def _tell_members(self, waits: dict[str, float], *, answered: bool) -> None:
        """Tell the group's members running elsewhere the consumers' new ``waits``.

        Each one reports what it holds of those consumers in progress at once, and at a
        third of the new wait from then on (see :meth:`_on_waits`). ``answered``: wait
        for their answers (sent once their in-progress acks are out), so that a shorter
        wait applies only after they have taken it up: until half a second passes
        without an answer, at most two seconds. Members of versions that do not listen
        do not answer; they learn the waits only when they are restarted.
        """
        assert self._waits_subject is not None
        payload = json.dumps({"member": self._member_id, "waits": waits}).encode()
        if not answered:
            await self._nc.publish(self._waits_subject, payload)
            return
        from nats.errors import TimeoutError as NatsTimeout

        inbox = self._nc.new_inbox()
        sub = await self._nc.subscribe(inbox)
        loop = asyncio.get_running_loop()
        try:
            await self._nc.publish(self._waits_subject, payload, reply=inbox)
            await self._nc.flush()
            deadline = loop.time() + 2.0
            while (left := min(0.5, deadline - loop.time())) > 0:
                try:
                    await sub.next_msg(timeout=left)
                except NatsTimeout:
                    break
        finally:
            await quietly(sub.unsubscribe(), "dropping a reply inbox", logger, deadline=None)

    async def _on_waits(self, msg: Msg) -> None:
        """Another member changed (or is about to change) the waits of the group's
        consumers: report what this member holds of them in progress now, and at a third
        of their new wait from then on; answer once the reports are out."""
        try:
            notice = json.loads(msg.data)
            waits = {
                name: float(wait)
                for name, wait in notice["waits"].items()
                if name in self._waits and math.isfinite(float(wait)) and float(wait) > 0
            }
            member = notice["member"]
        except (ValueError, TypeError, KeyError, AttributeError):
            logger.warning("ignoring a message on %s that is no notice of new waits", msg.subject)
            return
        if member == self._member_id:
            return  # our own
        self._waits.update(waits)
        from nats.errors import Error as NatsError

        now = time.monotonic()
        for entry in list(self._unsettled.values()):
            wait = waits.get(entry[3])
            if wait is not None:
                entry[1], entry[2] = now, wait / 3
                try:
                    await entry[0].in_progress()
                except NatsError:
                    break  # the connection is down: JetStream redelivers them anyway
        self._waits_changed()
        if msg.reply:
            try:
                await self._nc.publish(msg.reply, b"")
            except NatsError:
                pass

    def tick(self) -> float:
        """How often :meth:`keep_alive` should look: a sixth of the shortest wait, so a
        message's report, due a third of its wait after the last, goes out at the latest
        half its wait after it."""
        return min(self._waits.values()) / 6

    async def attach(self, nc: Client, js: JetStreamContext) -> None:
        """Listen through ``nc`` from now on, the client before it having been closed.

        The server closed that client for good (see ``NatsTransport._replace``), and
        with it its subscriptions. The JetStream consumers stay: this subscribes their
        deliver subjects again, on the new client. Messages received through the old
        one cannot be acknowledged any more; those being handled finish, and JetStream
        delivers them again after ``ack_wait`` (at-least-once).
        """
        if nc is self._nc or not self._subs:
            return  # the same client, or not started (or closed) yet
        queue = self.name if self.group is not None else ""
        subs: list[NatsSubscription] = []
        try:
            for lane in self.lanes:
                subs.append(
                    await nc.subscribe(lane.deliver_subject, queue=queue, cb=self._on_message)
                )
            if self._waits_subject is not None:
                subs.append(await nc.subscribe(self._waits_subject, cb=self._on_waits))
            await nc.flush()
        except BaseException:  # a half-made set would deliver twice once made again
            for sub in subs:
                await quietly(sub.unsubscribe(), "dropping a subscription", logger, deadline=None)
            raise
        self._nc, self._js, self._subs = nc, js, subs
        self._unsettled.clear()  # their in-progress acks cannot reach the server either

    async def _create(self, lane: Lane, **resume: Any) -> float | None:
        """Create the consumer of ``lane``, or join it: a group's exists once a member
        made it. Returns its ``ack_wait`` before when the server would not take the whole
        configuration again, so only the wait was changed (see ``_waits``); else None."""
        from nats.js.errors import BadRequestError, NotFoundError, ServerError

        before = None
        try:
            info = await self._js.add_consumer(self._stream, self._config(lane, **resume))
        except (BadRequestError, ServerError) as exc:
            # a group consumer made by another version of the program, or recreated from
            # a resume point (``deliver policy can not be updated``): join it if it
            # delivers the same events to the same place
            try:
                info = await self._js.consumer_info(self._stream, lane.name)
            except NotFoundError:
                raise exc from None  # not there: the server refused to make it
            config = info.config
            if (
                config.deliver_subject != lane.deliver_subject
                or config.filter_subject != lane.subject_filter.subject
            ):
                raise ConfigurationError(
                    f"JetStream consumer {lane.name!r} on stream {self._stream!r} exists with "
                    f"another shape (filter {config.filter_subject!r}, deliver subject "
                    f"{config.deliver_subject!r}); delete it or use another stream"
                ) from exc
            logger.info("joining existing consumer %s (%s)", lane.name, exc)
            before = float(config.ack_wait)
            if not same_wait(before, lane.ack_wait):
                option = self._wait_option(lane)
                await take_wait(self._js, self._stream, lane, option, config, self.group)
            return before
        if not resume and info.delivered is not None:
            self._origin[lane.name] = (info.delivered.stream_seq, info.created)
        return before

    def _wait_option(self, lane: Lane) -> str:
        """The transport option that sets ``lane``'s ack wait."""
        return "ack_wait" if lane.name == self.name else "lane_ack_wait"

    async def restore(self) -> None:
        """After a reconnect: recreate consumers the server lost (or deleted).

        A server restarted without its store lost them all; an ungrouped subscription's
        consumer is also deleted by JetStream once its connection was down longer than
        ``inactive_threshold``. Each comes back right after the last event it received
        (see :meth:`_resume_point`); what the stream no longer holds from there on (with
        interest retention: whatever no other consumer still wanted) cannot come back.
        """
        from nats.js.errors import NotFoundError

        if not self._subs:
            return
        stream = None
        for lane in self.lanes:
            try:
                info = await self._js.consumer_info(self._stream, lane.name)
            except NotFoundError:
                pass
            else:  # its wait, in case a member changed it while this one was away
                self._learn_wait(lane.name, info.config.ack_wait)
                continue
            if stream is None:
                stream = await self._js.stream_info(self._stream)
            resume = self._resume_point(lane, stream)
            if self.group is not None:
                logger.warning("JetStream consumer %s was lost; recreating it", lane.name)
            elif self._options.retention == "interest":
                logger.warning(
                    "JetStream deleted consumer %s: this process was unreachable longer than "
                    "inactive_threshold (%ss). With interest retention, the events published "
                    "meanwhile that no other consumer still held are gone; it resumes with "
                    "what the stream has after the last event it received",
                    lane.name,
                    self._options.inactive_threshold,
                )
            else:
                logger.info(
                    "JetStream deleted consumer %s (unreachable longer than "
                    "inactive_threshold); recreating it after the last event it received",
                    lane.name,
                )
            await self._create(lane, **resume)

    async def _check_wait(self, name: str) -> None:
        """A redelivery on a group's consumer: read its ``ack_wait`` again (at most once
        per wait), in case someone changed it without telling this member (a member of an
        earlier version, ``nats consumer edit``): the event may have come again because
        it waited for less than this member reports at."""
        wait = self._waits.get(name)
        now = time.monotonic()
        if wait is None or now - self._wait_checked.get(name, -math.inf) < wait:
            return
        self._wait_checked[name] = now
        try:
            async with asyncio.timeout(self._options.connect_timeout):
                info = await self._js.consumer_info(self._stream, name)
        except Exception as exc:  # never in the way of the delivery: the next one asks again
            logger.debug("could not read the ack_wait of consumer %s: %r", name, exc)
            return
        self._learn_wait(name, info.config.ack_wait)

    def _learn_wait(self, name: str, wait: float | None) -> None:
        """Take the ``ack_wait`` the server has for consumer ``name`` as its wait."""
        if wait is None or wait <= 0 or same_wait(self._waits[name], wait):
            return
        logger.info(
            "JetStream consumer %s waits %gs for acknowledgements (this member had %gs): "
            "another member or an operator changed it; reporting events held at a third "
            "of the new wait",
            name,
            wait,
            self._waits[name],
        )
        self._waits[name] = float(wait)
        for entry in self._unsettled.values():
            if entry[3] == name:
                entry[2] = min(entry[2], wait / 3)
        self._waits_changed()

    def _resume_point(self, lane: Lane, stream: Any) -> dict[str, Any]:
        """Where a recreated consumer starts: right after the last event it received.

        By stream sequence while the stream is the one it read from (created before that
        event was stored); by time when the stream was recreated meanwhile, its sequence
        numbers restarting (at-least-once: the last event may then come again). A
        consumer that received nothing yet starts where it started at first.
        """
        last = self._last_reply.get(lane.name)
        seen: int | None
        if last is not None:
            seen, when = parse_reply(last)[2], stored_at(last)
        else:
            seen, when = self._origin.get(lane.name, (None, self._created_at))
        created = getattr(stream, "created", None)
        if (
            seen is not None
            and created is not None
            and created <= when
            and stream.state.last_seq >= seen
        ):
            return {"opt_start_seq": seen + 1}
        return {"opt_start_time": when}

    async def close(self) -> None:
        """Stop receiving, finish what was received, delete an ungrouped consumer.

        The deliveries in progress always finish. The server is waited for at most
        ``connect_timeout`` seconds per step, and nothing raises: a subscription that
        cannot be drained is dropped (its messages, unacknowledged, are redelivered), a
        consumer that cannot be deleted expires after ``inactive_threshold``.
        """
        subs, self._subs = self._subs, []
        try:
            await self._stop_listening(subs)
            while self._tasks:
                await asyncio.wait(list(self._tasks))
        finally:  # cancelled too (a timeout around unsubscribe): let go of the rest
            await settled(self._let_go())

    async def _stop_listening(self, subs: list[NatsSubscription]) -> None:
        deadline = self._deadline()
        try:
            if self._nc.is_connected:  # the server stops sending; what it sent is handled
                what = f"draining a subscription of {self.name}"
                await asyncio.gather(
                    *(quietly(sub.drain(), what, logger, deadline=deadline) for sub in subs)  # type: ignore[no-untyped-call]
                )
                return
        except BaseException:
            # cancelled while draining (a slow server): a subscription left behind would
            # go on receiving, for a consumer nobody closes, the group's events
            await settled(self._drop(subs, deadline))
            raise
        await self._drop(subs, deadline)

    async def _drop(self, subs: list[NatsSubscription], deadline: float) -> None:
        """Stop listening here; unacknowledged, what was sent comes again."""
        what = f"dropping a subscription of {self.name}"
        for sub in subs:
            await quietly(sub.unsubscribe(), what, logger, deadline=deadline)

    async def _let_go(self) -> None:
        """Hand back what a removed member did not start; delete an ungrouped consumer."""
        held, self._not_started_msgs = self._not_started_msgs, []
        for msg in held:  # our removed subscription did not start them: to another member
            await self._settle(msg, ack=False)
        if self.group is None and self._nc.is_connected:
            # it expires on its own after inactive_threshold if this fails
            await quietly(
                self._js.delete_consumer(self._stream, self.name),
                f"deleting consumer {self.name}",
                logger,
                deadline=self._deadline(),
            )

    def _deadline(self) -> float:
        return asyncio.get_running_loop().time() + self._options.connect_timeout

    # -- delivery ---------------------------------------------------------------------

    async def _on_message(self, msg: Msg) -> None:
        reply = msg.reply
        try:
            consumer, deliveries, _ = parse_reply(reply)
        except ValueError:  # not a JetStream delivery: a stray publish
            logger.warning("ignoring a message on %s that JetStream did not deliver", msg.subject)
            return
        if deliveries == 1:  # first deliveries come in stream order; redeliveries do not
            self._last_reply[consumer] = reply
        elif self.group is not None:
            await self._check_wait(consumer)
        subject_filter = self._filter
        if not subject_filter.exact and not subject_filter.accepts(
            topic_of(msg.subject, self._prefix_length)
        ):
            await self._settle(msg, ack=True)
            return
        try:
            event = Event.from_json(msg.data)
        except Exception as exc:  # whatever the decoder raises: a poison message
            # left unsettled, it would hold its place (a key lane: the whole lane) until
            # ack_wait, and come back to do it again
            logger.error(
                "dropping a message on %s that is not a CloudEvents JSON event: %s",
                msg.subject,
                exc,
                exc_info=not isinstance(exc, SerializationError),  # unexpected: say where
            )
            await self._settle(msg, ack=False, term=True)
            return
        if deliveries > self._options.max_deliveries:
            reason = (
                f"delivered {deliveries - 1} times without being acknowledged "
                "(its consumer crashed or exceeded ack_wait)"
            )
            try:
                await self._dead_letter(
                    event, reason, deliveries - 1, self.group, message_identity(reply)
                )
            except ClosedError:  # close() drains this consumer: nothing is lost
                logger.debug(
                    "%s (%s) not dead-lettered: the transport is closing; the server "
                    "delivers it again after ack_wait",
                    event.type,
                    event.id,
                )
                return
            except Exception:  # the server is away, say: it comes again after ack_wait
                logger.exception("could not dead-letter %s (%s)", event.type, event.id)
                return
            await self._settle(msg, ack=True)
            return
        wait = self._waits.get(consumer, self._options.ack_wait)
        self._unsettled[id(msg)] = [msg, time.monotonic(), wait / 3, consumer]
        key = event.metadata.get(PARTITION_KEY) if event._metadata else None
        if key is not None:
            if not isinstance(key, str):  # another publisher's: its text orders it
                key = str(key)
            waiting = self._keyed.get(key)
            if waiting is not None:
                waiting.append((msg, event))
                return
            self._keyed[key] = deque()
        task = start(self._process(msg, event, key))
        if task is not None:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _process(self, msg: Msg, event: Event, key: str | None) -> None:
        """Deliver, then acknowledge; then the next waiting message with the same key.

        Only a cancellation of this task counts as a shutdown: ``since`` is its count when
        it started. A handler may catch the cancellation of this task and return; the
        count stays up (and takes every later ``CancelledError`` of a handler for a
        shutdown), so the loop then stops, naks the messages still waiting with the key
        (JetStream delivers them again at once, in a task that was not cancelled) and
        ends as cancelled: a shutdown that cancels its tasks must not wait for the rest
        of the key's backlog.
        """
        since = cancelling()
        while True:
            member = self._pick()
            if member is None:  # being unsubscribed (perhaps by its own handler)
                await self._not_started(msg, key)
                return
            try:
                await member.deliver(event)
            except NotDelivered:
                await self._not_started(msg, key)
                return
            except Exception:
                logger.exception(
                    "delivery of %s (%s) failed; redelivering",
                    event.type,
                    event.id,
                    extra=log_fields(
                        "delivery_failed",
                        event_id=event.id,
                        event_type=event.type,
                        group=self.group,
                    ),
                )
                await self._settle(msg, ack=False)
            except asyncio.CancelledError:
                # this runs in its own delivery task (see start()): unless that task is
                # being cancelled, the handler awaited something cancelled; a failed
                # delivery, which must not stop the loop
                if cancelled_by_caller(since):  # shutdown: the broker redelivers
                    self._forget(msg, key)
                    raise
                logger.error(
                    "delivery of %s (%s) was cancelled; redelivering", event.type, event.id
                )
                await self._settle(msg, ack=False)
            except BaseException:  # let the broker redeliver all of this key
                self._forget(msg, key)
                raise
            else:
                await self._settle(msg, ack=True)
            if key is None:
                return
            waiting = self._keyed[key]
            if not waiting:
                del self._keyed[key]
                return
            if cancelled_by_caller(since):  # a handler swallowed this task's cancellation
                await self._hand_back(key)
                raise asyncio.CancelledError
            msg, event = waiting.popleft()

    async def _hand_back(self, key: str) -> None:
        """Nak the messages waiting with ``key``: JetStream delivers them again at once."""
        waiting = self._keyed.pop(key, ())
        for held, _ in waiting:  # kept alive no more: cancelled meanwhile, they come back
            self._unsettled.pop(id(held), None)  # after ack_wait
        for held, _ in waiting:
            await self._settle(held, ack=False)

    def _pick(self) -> Subscription | None:
        """The next member in turn that is not being removed; None if all are."""
        members = self.members
        for _ in range(len(members)):
            member = members[self._turn % len(members)]
            self._turn += 1
            if not member.removed:
                return member
        return None

    async def _not_started(self, msg: Msg, key: str | None) -> None:
        """Settle what a removed subscription will not start: ``msg`` and its key's queue.

        Ungrouped, they are dropped (acknowledged: the consumer goes with the
        subscription). In a group they are nak'ed by :meth:`close` once this consumer
        stopped receiving (a nak now would hand them straight back to it), so JetStream
        gives them to another member at once.
        """
        waiting = self._keyed.pop(key, None) if key is not None else None
        if self.group is not None:
            for held in (msg, *(waiting_msg for waiting_msg, _ in waiting or ())):
                self._unsettled.pop(id(held), None)
                self._not_started_msgs.append(held)
            return
        await self._settle(msg, ack=True)
        for waiting_msg, _ in waiting or ():
            await self._settle(waiting_msg, ack=True)

    def _forget(self, msg: Msg, key: str | None) -> None:
        """Stop tracking ``msg`` and those waiting behind it (the broker redelivers them)."""
        self._unsettled.pop(id(msg), None)
        for waiting_msg, _ in self._keyed.pop(key, ()) if key is not None else ():
            self._unsettled.pop(id(waiting_msg), None)

    async def _settle(self, msg: Msg, *, ack: bool, term: bool = False) -> None:
        self._unsettled.pop(id(msg), None)
        try:
            if term:
                await msg.term()
            elif ack:
                await msg.ack()
            else:
                await msg.nak()
        except self._nats_error as exc:  # the broker redelivers after ack_wait
            logger.warning("could not settle message on %s: %s", msg.subject, exc)

    async def keep_alive(self) -> None:
        """Tell JetStream that messages held longer than a third of their consumer's
        ``ack_wait`` (since they came, or since the last report) are in progress.

        Keeps slow handlers (and messages queued behind one with the same key) from
        being redelivered to another member while they are still being worked on.
        """
        from nats.errors import Error as NatsError

        now = time.monotonic()
        for entry in list(self._unsettled.values()):
            if now - entry[1] >= entry[2]:
                entry[1] = now
                try:
                    await entry[0].in_progress()
                except NatsError:
                    return
