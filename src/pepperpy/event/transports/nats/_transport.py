"""The ``nats://`` transport: the bus over NATS JetStream.

Its client (connecting one, what nats-py reports about it, replacing one the server
closed) is in ``_connection``, setting subscriptions up and down in ``_subscribe``; this
module has the transport's entry points, its publish path and its shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import math
import secrets
import ssl
import time
from datetime import datetime
from typing import TYPE_CHECKING

from ..._bus_logging import log_fields
from ..._deadletter import dead_letter_event, partition_key
from ..._deps import require
from ..._errors import ClosedError
from ..._event import Event
from ..._oversize import OversizeError, log_dead_letter_dropped
from ..._redact import redact_url
from .._url_options import checked_keywords, default, given_keywords
from ..base import (
    Subscription,
    Transport,
    cancelling,
    resume_cancellation,
    shutdown_sockets,
)
from ._client import close_client
from ._connection import Connection
from ._consumer import Consumer
from ._options import SYNONYMS, NatsOptions, parse_url
from ._outage import Outages
from ._outcome import NotConnected, failed, full, may_be_stored, over_max_msg_size, reason
from ._stream import delete_stream
from ._subjects import ANY_LANE, key_lane, subject_filter, topic_subject
from ._subscribe import delete_group, join, leave
from ._tls import tls_settings
from ._watch import missing_reason, stream_missing, watch_stream

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.js import JetStreamContext

__all__ = ["NatsTransport"]

logger = logging.getLogger("pepperpy.event.transports.nats")

#: header JetStream uses to drop duplicates within the stream's duplicate window
MSG_ID = "Nats-Msg-Id"
#: what a message's headers take besides the id itself ("NATS/1.0\r\n", "Nats-Msg-Id: ",
#: "\r\n\r\n"): the server's max_payload covers headers and payload together
HEADER_BYTES = len("NATS/1.0\r\n") + len(MSG_ID) + len(": \r\n\r\n")


class NatsTransport(Connection, Transport):
    """Events on a NATS JetStream stream; groups are durable queue consumers.

    ``url`` is ``nats://[user:pass@]host:port`` (or a comma-separated list of them for a
    cluster) and may carry the options below in its query string
    (``nats://127.0.0.1:4222?stream=ORDERS&prefix=orders``); a keyword argument given
    explicitly wins over the query string, even one equal to the default. See
    :class:`NatsOptions` for each option (the keywords are its fields) and
    ``docs/transport-nats.md`` for how the bus's semantics map onto JetStream.
    ``max_deliver``, JetStream's name for ``max_deliveries``, is accepted too; giving both
    raises :class:`ConfigurationError`.

    TLS: a ``tls://`` URL (or a server that requires TLS) uses Python's default context,
    unless the options ``tls_ca``, ``tls_cert`` and ``tls_key`` (files, checked here)
    make one, or ``tls`` gives an :class:`ssl.SSLContext` of the caller's (not both).
    Any TLS setting makes TLS required of every server of the URL.

    ``publish`` returns once JetStream acknowledged the event (stored durably). Each
    ``publish`` call sends a ``Nats-Msg-Id`` of its own, which its retries reuse: a
    publish retried across a reconnect is stored once, and publishing one event twice
    (again, to another topic, or forwarded by a handler) stores it twice. Consumers
    acknowledge only after the subscription's handler finished.
    """

    @checked_keywords(SYNONYMS)
    def __init__(
        self,
        url: str = "nats://127.0.0.1:4222",
        *,
        stream: str = default(NatsOptions.stream),
        prefix: str = default(NatsOptions.prefix),
        retention: str = default(NatsOptions.retention),
        max_age: float | None = default(NatsOptions.max_age),
        replicas: int = default(NatsOptions.replicas),
        ack_wait: float = default(NatsOptions.ack_wait),
        lane_ack_wait: float | None = default(NatsOptions.lane_ack_wait),
        max_deliveries: int = default(NatsOptions.max_deliveries),
        max_deliver: int | None = None,
        max_ack_pending: int = default(NatsOptions.max_ack_pending),
        partitions: int = default(NatsOptions.partitions),
        inactive_threshold: float = default(NatsOptions.inactive_threshold),
        publish_timeout: float = default(NatsOptions.publish_timeout),
        connect_timeout: float = default(NatsOptions.connect_timeout),
        reconnect_wait: float = default(NatsOptions.reconnect_wait),
        ping_interval: float = default(NatsOptions.ping_interval),
        max_outstanding_pings: int = default(NatsOptions.max_outstanding_pings),
        tls_ca: str | None = default(NatsOptions.tls_ca),
        tls_cert: str | None = default(NatsOptions.tls_cert),
        tls_key: str | None = default(NatsOptions.tls_key),
        tls_hostname: str | None = default(NatsOptions.tls_hostname),
        tls: ssl.SSLContext | None = None,
    ) -> None:
        given = given_keywords(
            {
                "stream": stream,
                "prefix": prefix,
                "retention": retention,
                "max_age": max_age,
                "replicas": replicas,
                "ack_wait": ack_wait,
                "lane_ack_wait": lane_ack_wait,
                "max_deliveries": max_deliveries,
                "max_ack_pending": max_ack_pending,
                "partitions": partitions,
                "inactive_threshold": inactive_threshold,
                "publish_timeout": publish_timeout,
                "connect_timeout": connect_timeout,
                "reconnect_wait": reconnect_wait,
                "ping_interval": ping_interval,
                "max_outstanding_pings": max_outstanding_pings,
                "tls_ca": tls_ca,
                "tls_cert": tls_cert,
                "tls_key": tls_key,
                "tls_hostname": tls_hostname,
            }
        )
        if max_deliver is not None:  # checked_keywords refused it given with max_deliveries
            given["max_deliveries"] = max_deliver
        # a missing driver is named where the bus is made, as the other transports do
        require("nats", extra="nats", feature="the nats:// transport")
        self.servers, self.options, self._token = parse_url(url, given)
        #: the server URL(s), comma-separated, without options or passwords (for messages)
        self.server = ",".join(redact_url(server) for server in self.servers)
        #: the TLS context (``tls=``, or made of tls_ca, tls_cert and tls_key) and host name
        self._tls = tls_settings(self.options, tls)
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._consumers: dict[str, Consumer] = {}
        self._instance = secrets.token_hex(4)
        #: message ids are ``<publisher>.<n>``: unique per publish() call (see publish)
        self._publisher = secrets.token_hex(8)
        self._publish_count = itertools.count()
        self._ticker: asyncio.Task[None] | None = None
        #: looks every ping_interval whether the subscriptions' stream is still there
        self._watching: asyncio.Task[None] | None = None
        #: set when a consumer learns a shorter wait: the ticker looks again at once
        self._tick_now = asyncio.Event()
        self._restoring: asyncio.Task[None] | None = None
        #: a client the server closed for good, being (or having been) replaced
        self._replaced: Client | None = None
        self._replacing: asyncio.Task[None] | None = None
        #: why the server closed the client, until a new one is connected
        self._lost: str | None = None
        #: what the log says while the connection is lost
        self._outages = Outages(self.server, self.options)
        self._closed = False
        #: how the stream there differs from retention and max_age (warned about once)
        self._stream_differs: str | None = None
        #: when the server created the stream, as last checked (tells a stream made
        #: again under the same name from the one the consumers are on)
        self._stream_created: datetime | None = None
        #: since when (monotonic) and why the stream is missing, until it is made again
        #: (for health(); see _watch)
        self._stream_missing: tuple[float, str] | None = None
        #: when a restoration that failed is tried again by the watch
        self._stream_retry_at = -math.inf
        #: set by close() once its consumers' handlers have finished (at once if it is
        #: cancelled): publishes are refused from then on, those of the handlers it
        #: waits for (dead letters included) go through until then
        self._publishes_refused = False
        #: when a publish that nothing answered last set the stream's restoration off
        self._stream_gone_at = -math.inf
        #: why the stream could not be made again (a stream of that name with other
        #: subjects, say), until a restoration gets past it
        self._unrestorable: str | None = None
        #: publishes under way: close() waits for them before it closes the client
        self._publishing = 0
        #: set by the last publish to end once close() waits for them
        self._settled: asyncio.Event | None = None

    def __repr__(self) -> str:  # the prefix too: it decides which events the bus sees
        options = self.options
        return (
            f"NatsTransport({self.server!r}, stream={options.stream!r}, prefix={options.prefix!r})"
        )

    @property
    def stream(self) -> str:
        """The JetStream stream holding this bus's events."""
        return self.options.stream

    def subject(self, topic: str, key: str | None = None) -> str:
        """The NATS subject events of ``topic`` (published with ``key``) travel on."""
        return topic_subject(self.options.prefix, key_lane(key, self.options.partitions), topic)

    # -- connection -------------------------------------------------------------------

    async def start(self) -> None:
        """Connect and make sure the stream exists, within ``connect_timeout`` seconds.

        A server that refuses, resets or never answers (a network partition) fails it
        with :class:`TransportError` once the time is up; later disconnects are retried
        forever in the background, and a connection the server closes for good is
        replaced (see :meth:`_replace`).
        """
        if self._closed:
            raise ClosedError("the NATS transport is closed")
        if self._nc is not None:
            return
        nc = await self._connect()
        self._nc, self._js = nc, nc.jetstream()
        # a held message is due a report a third of its ack_wait after the last one;
        # checked this often, it goes out at the latest half its ack_wait after
        interval = min(self.options.ack_wait, self.options.lane_wait) / 6
        loop = asyncio.get_running_loop()
        self._ticker = loop.create_task(self._keep_alive(interval))
        self._watching = loop.create_task(watch_stream(self))

    async def _keep_alive(self, interval: float) -> None:
        """Every ``interval`` (more often once a group's consumers wait less, see
        ``Consumer.tick``): in-progress acks for events held a third of their
        consumer's ``ack_wait`` since they came or were last reported."""
        while True:
            resume_cancellation()  # one a publish of the last round lost
            pause = min([interval, *(c.tick() for c in list(self._consumers.values()))])
            self._tick_now.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(pause):
                    await self._tick_now.wait()
            for consumer in list(self._consumers.values()):
                try:
                    await consumer.keep_alive()
                except Exception:  # never let the ticker die: slow events would be redelivered
                    logger.exception("in-progress acks for %s failed", consumer.name)

    # -- publishing -------------------------------------------------------------------

    async def publish(self, event: Event, *, key: str | None = None) -> None:
        """Store ``event`` in the stream; raise :class:`TransportError` if JetStream did
        not acknowledge it within ``publish_timeout`` seconds (retrying meanwhile).

        The ``Nats-Msg-Id`` is new for every call (a random id of this transport and a
        counter), not the event's id: JetStream drops a message whose id it saw within
        its duplicate window, and the same event may rightly be published more than once.
        Only this call's own retries reuse it, so one whose PubAck was lost is not
        stored twice; a new call after a failure is not deduplicated. The error's
        ``stored`` says whether the event may be in the stream (``None``: a try went out
        and got no answer; ``False``: none was sent, or JetStream refused it).

        While :meth:`close` waits for the handlers in progress, publishes go through as
        usual (a handler's follow-up event); once they have finished, a publish raises
        :class:`ClosedError` (``stored`` False).
        """
        msg_id = f"{self._publisher}.{next(self._publish_count)}"
        subject, payload = self.subject(event.type, key), event.to_json()
        if self._too_large(payload, msg_id):
            assert self._nc is not None
            raise OversizeError(
                f"cannot publish {event.type!r} ({event.id}): {self._size(payload, msg_id)}; "
                "keep large data out of events (store it elsewhere and send a reference) "
                "or raise max_payload in the server's configuration",
                size=len(payload) + len(msg_id) + HEADER_BYTES,
                limit=self._nc.max_payload,
                source="the NATS server's max_payload",
            )
        await self._publish(subject, payload, msg_id)

    def _too_large(self, payload: bytes, msg_id: str) -> bool:
        """True when the server would refuse this message (and close the connection).

        nats-py checks the payload alone against the server's ``max_payload``, which
        counts the headers too: a message in between reaches the server, which answers
        ``-ERR`` and closes the connection.
        """
        nc = self._nc
        return nc is not None and len(payload) + len(msg_id) + HEADER_BYTES > nc.max_payload

    def _size(self, payload: bytes, msg_id: str) -> str:
        """The size of a message that is too large, and the limit, for messages."""
        assert self._nc is not None
        return (
            f"it is {len(payload) + len(msg_id) + HEADER_BYTES:,} bytes on the wire (its "
            f"CloudEvents JSON and the {MSG_ID} header), over the NATS server's max_payload "
            f"of {self._nc.max_payload:,} bytes"
        )

    async def _publish(self, subject: str, payload: bytes, msg_id: str) -> None:
        if self._publishes_refused:
            raise ClosedError("the NATS transport is closed", stored=False)
        nc = self._nc
        if nc is None:
            raise ClosedError("the NATS transport is closed or not started", stored=False)
        self._publishing += 1
        try:
            await self._publish_on(nc, subject, payload, msg_id)
        finally:
            self._publishing -= 1
            if not self._publishing and self._settled is not None:
                self._settled.set()

    async def _publish_on(self, nc: Client, subject: str, payload: bytes, msg_id: str) -> None:
        started = time.monotonic()
        # the caller's task may be cleaning up after its cancellation (a last event
        # published in a finally:): only one that comes during this call stops it
        since = cancelling()
        try:
            if not nc.is_connected:
                raise NotConnected
            await _store(nc, subject, payload, msg_id, min(5.0, self.options.publish_timeout))
        except Exception as exc:  # sorted out below, off the hot path
            deadline = started + self.options.publish_timeout
            await self._publish_again(subject, payload, msg_id, exc, deadline, since)

    async def _publish_again(
        self,
        subject: str,
        payload: bytes,
        msg_id: str,
        error: Exception,
        deadline: float,
        since: int,
    ) -> None:
        """Retry a publish that failed because the broker is away; raise for the rest.

        Retries with backoff until ``deadline`` (``time.monotonic()``: the publish began
        ``publish_timeout`` before it), also while a client the server closed is being
        replaced. The message id makes a retry of an event that JetStream did store
        (only its PubAck was lost) a no-op. ``since`` is the task's count of
        cancellations when the publish began (see ``resume_cancellation``).

        The :class:`TransportError` raised says whether the event may be stored
        (``stored``): not if no attempt was sent, or each one sent was answered with a
        refusal; unknown once one went out and got no answer.
        """
        from nats.errors import ConnectionClosedError, NoRespondersError
        from nats.errors import TimeoutError as NatsTimeout
        from nats.js.errors import NoStreamResponseError, ServiceUnavailableError

        retryable = (
            NotConnected,
            TimeoutError,
            NatsTimeout,
            NoRespondersError,
            NoStreamResponseError,
            ServiceUnavailableError,
            ConnectionClosedError,  # by the server: a new client is on its way
        )
        delay = 0.05
        unknown = False  # an attempt went out and got no answer: it may be stored
        while True:
            # the caller is cancelled: the last try lost it (nats-py's request waits
            # with asyncio.wait_for), or it came between tries; do not try again
            resume_cancellation(since)
            unknown = unknown or may_be_stored(error)
            if (limit := full(error)) is not None:  # no retry makes room soon: say so
                raise failed(
                    f"JetStream refused an event on {subject}: stream {self.stream!r} is full "
                    f"({limit}): it has reached a limit "
                    "(max_msgs, max_bytes or max_msgs_per_subject) with discard=new, so it "
                    "refuses new messages rather than drop old ones",
                    unknown=unknown,
                ) from error
            if over_max_msg_size(error):  # an operator's limit on the stream
                refusal = failed(
                    f"JetStream refused an event on {subject}: {reason(error)} (it is "
                    f"{len(payload) + len(msg_id) + HEADER_BYTES:,} bytes with its {MSG_ID} "
                    f"header, over stream {self.stream!r}'s max_msg_size)",
                    unknown=unknown,
                )
                raise OversizeError(
                    str(refusal),
                    size=len(payload) + len(msg_id) + HEADER_BYTES,
                    limit=None,
                    source=f"JetStream stream {self.stream!r}'s max_msg_size",
                    stored=refusal.stored,
                ) from error
            if not isinstance(error, retryable):
                raise failed(
                    f"JetStream refused an event on {subject}: {error}", unknown=unknown
                ) from error
            nc = self._nc
            if self._publishes_refused or nc is None:  # close() is past the handlers
                raise failed(f"could not publish to {subject}: {error}", unknown=unknown) from error
            if nc.is_closed:
                self._replace(nc)  # in case nats-py has not reported the close yet
                if self._replacing is None or self._replacing.done():
                    raise failed(
                        f"could not publish to {subject}: {self._lost_connection()}",
                        unknown=unknown,
                    ) from error
            if isinstance(error, NoRespondersError | NoStreamResponseError):
                # connected, and no stream takes the subject: the stream was deleted (or
                # the server lost it). Consumers first: under interest retention an event
                # stored while none exists is dropped at once
                await self._stream_gone(subject, deadline)
                if self._unrestorable is not None:  # waiting does not fix that
                    raise failed(
                        f"could not publish to {subject}: no JetStream stream takes it, and "
                        f"the transport could not make stream {self.stream!r} again: "
                        f"{self._unrestorable}",
                        unknown=unknown,
                    ) from error
            # reconnecting: look again soon, rather than backing off
            pause = min(delay, 0.1) if isinstance(error, NotConnected) else delay
            if time.monotonic() + pause > deadline:
                lost = f"; {self._lost_connection()}" if self._lost is not None else ""
                raise failed(
                    f"JetStream did not accept an event on {subject} within "
                    f"{self.options.publish_timeout}s: {reason(error)}{lost}",
                    unknown=unknown,
                ) from error
            await asyncio.sleep(pause)
            delay = min(delay * 2, 1.0)
            remaining = deadline - time.monotonic()
            nc = self._nc
            if remaining <= 0.01 or nc is None or self._publishes_refused:
                continue  # no time left for a try, or closed: raises above
            try:
                if not nc.is_connected:
                    raise NotConnected
                await _store(nc, subject, payload, msg_id, min(5.0, remaining))
                return
            except Exception as exc:  # classified at the top of the loop
                error = exc

    async def _stream_gone(self, subject: str, deadline: float) -> None:
        """Make the stream and the consumers again, once nothing answered a publish on
        ``subject`` while connected; wait for that (at most until ``deadline``).

        After a reconnect that is done anyway (see ``_recovery``); a stream deleted under
        a connection that stayed up (``nats stream rm``, another program's
        ``delete_topology()``) was otherwise gone until the process restarted.
        """
        restoring = self._restoring
        if restoring is None or restoring.done():
            nc, now = self._nc, time.monotonic()
            if nc is None or not nc.is_connected or self._closed:
                return
            if now - self._stream_gone_at < 5.0:  # tried just now: not again and again
                return
            self._stream_gone_at = now
            stream_missing(self, f"JetStream stream {self.stream!r} is gone")
            logger.warning(
                "nothing answers publishes on %s: JetStream stream %r is gone (deleted, or "
                "lost by the server) or not ready; recreating it and its consumers",
                subject,
                self.stream,
            )
            restoring = self._restoring = asyncio.get_running_loop().create_task(
                self._restore_consumers()
            )
        left = deadline - time.monotonic()
        if left > 0:
            await asyncio.wait([restoring], timeout=left)

    async def _dead_letter(
        self, event: Event, reason: str, deliveries: int, group: str | None, message: str
    ) -> None:
        """Move an event no consumer managed to acknowledge to ``deadletter.<topic>``.

        ``message`` names the stored message and the consumer that gave up on it (see
        :func:`~._consumer.message_identity`): one dead letter per stored message and
        consumer, even if this runs twice for it, but one for each publication of an
        event published more than once.

        A dead letter over the server's ``max_payload`` (its metadata made an event that
        fit too large) is not sent: nothing could store it, and the message left
        unacknowledged would come back to fail again. It is dropped with the ERROR record
        RabbitMQ's delivery limit logs for one (kind ``dead_letter_dropped``, in place of
        ``broker_dead_letter``), and the caller acknowledges the message; so is one
        JetStream refuses as over the stream's ``max_msg_size`` (an operator's limit).

        ``broker_dead_letter`` is logged once the dead letter is stored. A publish that
        fails raises, unlogged here: the caller leaves the message unacknowledged, and
        JetStream delivers it again after ``ack_wait``.
        """
        dead = dead_letter_event(event, reason=reason, attempts=deliveries, group=group)
        if dead is None:  # never dead-letter a dead letter
            self._dead_lettered(event, reason, deliveries, group)
            return
        msg_id = f"dl.{message}"
        subject, payload = self.subject(dead.type, partition_key(dead)), dead.to_json()
        if self._too_large(payload, msg_id):  # nothing can store it: it would come forever
            assert self._nc is not None
            log_dead_letter_dropped(
                logger,
                event,
                dead,
                deliveries=deliveries,
                group=group,
                size=len(payload) + len(msg_id) + HEADER_BYTES,
                limit=self._nc.max_payload,
                limit_name="max_payload",
                source=f"the NATS server's, counting the {MSG_ID} header",
                transport=self.server,
            )
            return
        try:
            await self._publish(subject, payload, msg_id)
        except OversizeError as too_large:  # over the stream's max_msg_size
            log_dead_letter_dropped(
                logger,
                event,
                dead,
                deliveries=deliveries,
                group=group,
                size=too_large.size,
                limit=None,
                limit_name="max_msg_size",
                source=f"JetStream stream {self.stream!r} refused it",
                transport=self.server,
            )
            return
        # logged once the dead letter is stored: one that failed (the message comes
        # again after ack_wait) is not counted as dead-lettered
        self._dead_lettered(event, reason, deliveries, group)

    def _dead_lettered(self, event: Event, reason: str, deliveries: int, group: str | None) -> None:
        """Log an event given up on (see :meth:`_dead_letter`)."""
        logger.error(
            "%s (%s) on %s: %s",
            event.type,
            event.id,
            self.stream,
            reason,
            extra=log_fields(
                "broker_dead_letter",
                event_id=event.id,
                event_type=event.type,
                group=group,
                deliveries=deliveries,
                transport=self.server,
            ),
        )

    # -- consuming --------------------------------------------------------------------

    def check_pattern(self, pattern: str) -> None:
        subject_filter(self.options.prefix, ANY_LANE, pattern)  # '>' is a NATS wildcard

    async def subscribe(self, subscription: Subscription) -> None:
        await join(self, subscription)

    async def unsubscribe(self, subscription: Subscription) -> None:
        """Stop delivering to ``subscription`` once what it received is done.

        Another member of its group in this process takes its turns. The last one drains
        its queue subscriptions (so JetStream delivers the group's events to the members
        in other processes) but leaves the durable consumers in place for them; an
        ungrouped subscription's consumer is deleted.
        """
        await leave(self, subscription)

    async def delete_group(self, subscription: Subscription) -> None:
        """Delete the group's durable consumers (unkeyed events, and one per key lane):
        what they had not delivered goes, and with ``retention=interest`` the stream
        drops the messages no other consumer wants.

        Members running in other processes are not told: their consumers are gone, so
        they receive nothing more, until a reconnect or a restart makes the group anew.
        """
        await delete_group(self, subscription)

    # -- shutdown ---------------------------------------------------------------------

    async def close(self) -> None:
        """Stop receiving, finish the deliveries in progress, delete ungrouped consumers,
        disconnect.

        Handlers in progress always finish, and what they publish (their follow-up
        events, dead letters) goes out as usual meanwhile. Then publishes are refused with
        :class:`ClosedError` (``stored`` False), and those under way get JetStream's
        answer (within ``connect_timeout``) before the connection closes; a cancelled
        close() refuses publishes at once and waits for none. Each step that needs the
        server waits for it at most ``connect_timeout`` seconds, and none raises: while
        the server is unreachable, what it would have been told happens on its own
        (unacknowledged events are redelivered after ``ack_wait``; an ungrouped consumer
        is deleted after ``inactive_threshold``). Nothing of the connection is left
        running afterwards; later calls return at once.
        """
        if self._closed:
            return
        self._closed = True
        running = (self._replacing, self._restoring, self._ticker, self._watching)
        tasks = [t for t in running if t is not None]
        consumers = list(self._consumers.values())
        self._consumers.clear()
        self._publishes_refused = not consumers  # no handler to wait for
        nc = self._nc
        try:
            for task in tasks:
                task.cancel()
            if tasks:  # raises only if close() itself is cancelled meanwhile
                await asyncio.wait(tasks)
            nc = self._nc  # a replacing task may have put in another one
            await asyncio.gather(*(consumer.close() for consumer in consumers))
            self._publishes_refused = True
            await self._publishes_settled()
        finally:  # cancelled too: nothing of the connection keeps running
            self._publishes_refused = True
            nc, self._nc, self._js = self._nc or nc, None, None
            if nc is not None:
                await close_client(nc, self._deadline())

    async def _publishes_settled(self) -> None:
        """Wait (at most ``connect_timeout``) for the publishes under way: closing the
        client under them would fail them with ``stored=None`` though JetStream may be
        about to acknowledge them. They make no new attempt meanwhile."""
        if not self._publishing:
            return
        self._settled = settled = asyncio.Event()
        try:
            async with asyncio.timeout(self.options.connect_timeout):
                await settled.wait()
        except TimeoutError:  # each publish gives up within publish_timeout by itself
            logger.warning(
                "closing the NATS connection with %d publish(es) unanswered after %gs "
                "(connect_timeout)",
                self._publishing,
                self.options.connect_timeout,
            )

    def outage(self) -> float | None:
        """Seconds since the connection to NATS was lost, or since the subscriptions'
        stream was found missing (until it is made again); None while all is well."""
        down = self._outages.down_for()
        if down is not None:
            return down
        missing = missing_reason(self)
        return None if missing is None else time.monotonic() - missing[0]

    def outage_reason(self) -> tuple[str, str] | None:
        """Why the connection to NATS is not back (the latest failure): ``"credentials
        refused"``, ``"tls refused"`` (reconnections fail their TLS handshake for good) or
        ``"unreachable"``, with what the server or the network said; or
        ``"consumer failed"`` while the stream is missing (deleted under a running bus)
        and not made again yet."""
        reason = self._outages.reason()
        if reason is not None:
            return reason
        missing = missing_reason(self)
        return None if missing is None else missing[1]

    def abandon(self) -> None:
        """Drop the connection of an event loop that ended; shut its socket down."""
        self._closed = self._publishes_refused = True
        self._consumers.clear()
        nc, self._nc, self._js = self._nc, None, None
        self._ticker = self._watching = self._restoring = self._replacing = None
        if nc is not None:
            transport = getattr(nc, "_transport", None)
            shutdown_sockets([getattr(transport, "_io_writer", None)])

    async def delete_topology(self) -> None:
        """Delete the stream with every event and consumer on it (durable groups too):
        all the transport makes on the server. The name every transport has for this;
        :meth:`delete_stream` is the same, and says whether the stream existed.

        For tests, examples and tear-down scripts; works before ``start()`` and after
        ``close()`` (it connects briefly). No stream is no error.
        """
        await self.delete_stream()

    async def delete_stream(self) -> bool:
        """Delete the stream with every event and consumer on it (durable groups too).

        :meth:`delete_topology` under its older, NATS-specific name. For tests and
        tear-down scripts; works before ``start()`` and after ``close()`` (it connects
        briefly). Returns False when the stream did not exist.
        """
        return await delete_stream(
            self.servers,
            self.server,
            self.stream,
            self._token,
            self.options.connect_timeout,
            self._tls,
        )


async def _store(nc: Client, subject: str, payload: bytes, msg_id: str, wait: float) -> None:
    """Publish to JetStream and wait for its PubAck; raise nats-py's errors on refusal.

    What ``JetStreamContext.publish`` does, minus decoding every PubAck into an object:
    the reply is only parsed when it carries an error (a publish is one request, so this
    is on every event's path).
    """
    reply = await nc.request(subject, payload, timeout=wait, headers={MSG_ID: msg_id})
    data = reply.data
    if not data or b'"error":' in data:
        from nats.js.errors import APIError

        try:
            error = json.loads(data)["error"]
        except (ValueError, KeyError, TypeError):
            raise APIError(description=f"unexpected reply to a publish: {data!r}") from None
        APIError.from_error(error)  # raises the matching APIError subclass
