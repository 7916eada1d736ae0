"""One JetStream push consumer and the subscriptions it feeds in this process.

A grouped subscription is a durable consumer shared by every member process: its
deliver subject is subscribed with a NATS queue group, so each message reaches one
process. An ungrouped subscription is a consumer of its own that JetStream deletes
after ``inactive_threshold`` once nobody listens (the process exited), so it never
keeps a backlog.

Messages are acknowledged only after ``Subscription.deliver`` returned. Messages that
carry a partition key are handed over one at a time per key (later ones wait in a
per-key queue), so a group keeps per-key order inside a process; other messages run
concurrently, up to the consumer's ``max_ack_pending``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ..._errors import ConfigurationError, SerializationError
from ..._event import Event
from ..._handlers import start
from ..base import Subscription
from ._options import NatsOptions
from ._subjects import SubjectFilter

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg
    from nats.aio.subscription import Subscription as NatsSubscription
    from nats.js import JetStreamContext

__all__ = ["Consumer", "DeadLetterHook"]

logger = logging.getLogger("pepperpy.event.transports.nats")

#: the CloudEvents partitioning extension, where the bus puts ``key``
PARTITION_KEY = "partitionkey"
#: deliver subjects of shared (group) consumers live under this root
DELIVER_ROOT = "_PEPPERPY"

#: ``(event, reason, deliveries, group)`` -> publishes ``event`` to its dead-letter topic
DeadLetterHook = Callable[[Event, str, int, "str | None"], Awaitable[None]]


def delivery_count(reply: str) -> int:
    """How many times JetStream has delivered the message with this ack subject.

    ``$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>``, or with
    domain and account hash (``$JS.ACK.<domain>.<hash>.<stream>...``) on newer servers.
    """
    tokens = reply.split(".")
    return int(tokens[4] if len(tokens) == 9 else tokens[6])


def stream_sequence(reply: str) -> int:
    """The stream sequence number in an ack subject (see :func:`delivery_count`)."""
    tokens = reply.split(".")
    return int(tokens[5] if len(tokens) == 9 else tokens[7])


class Consumer:
    """A JetStream push consumer feeding one or more local subscriptions."""

    def __init__(
        self,
        *,
        nc: Client,
        js: JetStreamContext,
        stream: str,
        name: str,
        group: str | None,
        subject_filter: SubjectFilter,
        prefix: str,
        options: NatsOptions,
        dead_letter: DeadLetterHook,
    ) -> None:
        self.name = name
        self.group = group
        self.members: list[Subscription] = []
        self._nc = nc
        self._js = js
        self._stream = stream
        self._filter = subject_filter
        self._topic_start = len(prefix) + 1
        self._options = options
        self._dead_letter = dead_letter
        self._sub: NatsSubscription | None = None
        self._turn = 0
        self._created_at = datetime.now(UTC)
        self._last_reply: str | None = None
        #: received and not yet settled: id(msg) -> [msg, when last reported alive]
        self._unsettled: dict[int, list[Any]] = {}
        #: partition key -> messages waiting for the one in progress with that key
        self._keyed: dict[str, deque[tuple[Msg, Event]]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- lifecycle --------------------------------------------------------------------

    def _config(self, deliver_subject: str, **start: Any) -> Any:
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        options = self._options
        config = ConsumerConfig(
            name=self.name,
            durable_name=self.name,
            deliver_subject=deliver_subject,
            deliver_policy=DeliverPolicy.NEW,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=options.ack_wait,
            max_deliver=-1,  # the poison-message limit is enforced here, with a dead letter
            max_ack_pending=options.max_ack_pending,
            filter_subject=self._filter.subject,
        )
        if self.group is not None:
            config.deliver_group = self.name
            config.description = f"pepperpy-event group {self.group!r}"
        else:
            config.inactive_threshold = options.inactive_threshold
            config.description = "pepperpy-event subscriber (removed when idle)"
        if start.get("opt_start_seq") is not None:
            config.deliver_policy = DeliverPolicy.BY_START_SEQUENCE
            config.opt_start_seq = start["opt_start_seq"]
        elif start.get("opt_start_time") is not None:
            config.deliver_policy = DeliverPolicy.BY_START_TIME
            config.opt_start_time = start["opt_start_time"]
        return config

    async def start(self) -> None:
        """Listen on the deliver subject, then create the consumer if it is missing."""
        from nats.js.errors import NotFoundError

        existing = None
        if self.group is not None:
            try:
                existing = await self._js.consumer_info(self._stream, self.name)
            except NotFoundError:
                existing = None
        if existing is not None:
            config = existing.config
            if config.deliver_subject is None or config.filter_subject != self._filter.subject:
                raise ConfigurationError(
                    f"JetStream consumer {self.name!r} on stream {self._stream!r} exists with "
                    f"another shape (filter {config.filter_subject!r}); delete it or use "
                    "another stream"
                )
            deliver_subject = config.deliver_subject
        elif self.group is not None:
            deliver_subject = f"{DELIVER_ROOT}.{self._stream}.{self.name}"
        else:
            deliver_subject = self._nc.new_inbox()
        self._sub = await self._nc.subscribe(
            deliver_subject,
            queue=self.name if self.group is not None else "",
            cb=self._on_message,
        )
        await self._nc.flush()
        if existing is None:
            await self._js.add_consumer(self._stream, self._config(deliver_subject))

    async def restore(self) -> None:
        """After a reconnect: recreate the consumer if the server lost it."""
        from nats.js.errors import NotFoundError

        if self._sub is None:
            return
        try:
            await self._js.consumer_info(self._stream, self.name)
            return
        except NotFoundError:
            pass
        if self._last_reply is not None:
            resume: dict[str, Any] = {"opt_start_seq": stream_sequence(self._last_reply) + 1}
        else:
            resume = {"opt_start_time": self._created_at}
        logger.warning("JetStream consumer %s was lost; recreating it", self.name)
        await self._js.add_consumer(self._stream, self._config(self._sub.subject, **resume))

    async def close(self) -> None:
        """Stop receiving, finish what was received, delete an ungrouped consumer."""
        from nats.errors import Error as NatsError

        sub, self._sub = self._sub, None
        if sub is not None and not self._nc.is_closed:
            try:
                await sub.drain()  # type: ignore[no-untyped-call]
            except NatsError as exc:
                logger.warning("could not drain subscription of %s: %s", self.name, exc)
        while self._tasks:
            await asyncio.wait(list(self._tasks))
        if self.group is None and self._nc.is_connected:
            try:
                await self._js.delete_consumer(self._stream, self.name)
            except NatsError as exc:  # it expires on its own after inactive_threshold
                logger.debug("could not delete consumer %s: %s", self.name, exc)

    # -- delivery ---------------------------------------------------------------------

    async def _on_message(self, msg: Msg) -> None:
        reply = msg.reply
        if not reply:  # not a JetStream delivery (a stray publish on the inbox)
            return
        self._last_reply = reply
        if not self._filter.exact and not self._filter.accepts(msg.subject[self._topic_start :]):
            await self._settle(msg, ack=True)
            return
        try:
            event = Event.from_json(msg.data)
        except (SerializationError, ValueError, TypeError) as exc:
            logger.error(
                "dropping a message on %s that is not a CloudEvents JSON event: %s",
                msg.subject,
                exc,
            )
            await self._settle(msg, ack=False, term=True)
            return
        deliveries = delivery_count(reply)
        if deliveries > self._options.max_deliver:
            reason = (
                f"delivered {deliveries - 1} times without being acknowledged "
                "(its consumer crashed or exceeded ack_wait)"
            )
            await self._dead_letter(event, reason, deliveries - 1, self.group)
            await self._settle(msg, ack=True)
            return
        self._unsettled[id(msg)] = [msg, time.monotonic()]
        key = event.metadata.get(PARTITION_KEY) if event._metadata else None
        if key is not None:
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
        """Deliver, then acknowledge; then the next waiting message with the same key."""
        while True:
            members = self.members
            member = members[self._turn % len(members)]
            self._turn += 1
            try:
                await member.deliver(event)
            except Exception:
                logger.exception("delivery of %s (%s) failed; redelivering", event.type, event.id)
                await self._settle(msg, ack=False)
            else:
                await self._settle(msg, ack=True)
            if key is None:
                return
            waiting = self._keyed[key]
            if not waiting:
                del self._keyed[key]
                return
            msg, event = waiting.popleft()

    async def _settle(self, msg: Msg, *, ack: bool, term: bool = False) -> None:
        from nats.errors import Error as NatsError

        self._unsettled.pop(id(msg), None)
        try:
            if term:
                await msg.term()
            elif ack:
                await msg.ack()
            else:
                await msg.nak()
        except NatsError as exc:  # the broker redelivers after ack_wait
            logger.warning("could not settle message on %s: %s", msg.subject, exc)

    async def keep_alive(self, older_than: float) -> None:
        """Tell JetStream that messages held longer than ``older_than`` s are in progress.

        Keeps slow handlers (and messages queued behind one with the same key) from
        being redelivered to another member while they are still being worked on.
        """
        from nats.errors import Error as NatsError

        now = time.monotonic()
        for entry in list(self._unsettled.values()):
            if now - entry[1] >= older_than:
                entry[1] = now
                try:
                    await entry[0].in_progress()
                except NatsError:
                    return
