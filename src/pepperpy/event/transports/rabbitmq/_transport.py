"""RabbitMQTransport: the connection, its lifecycle, and the transport's entry points.

Starting (the first connection, retried while the broker comes up) is in ``_starting``,
publishing in ``_publish``, setting subscriptions up and down in ``_subscribe``,
consuming in ``_consumer`` (with ``_acks``, ``_handover`` and ``_deliveries``), groups in
``_group``, what a lost connection logs in ``_logs``, a silent broker at close in
``_closing``."""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from ..._deps import require
from ..._errors import ClosedError, ConfigurationError, PatternError, TransportError
from ..._event import Event
from ..._patterns import parse_pattern
from ..._redact import redact_url
from ..._text import overflow_index, shown
from .._url_options import checked_keywords, default, given_keywords
from ..base import (
    Subscription,
    Transport,
    cancelled_by_caller,
    cancelling,
    quietly,
    shutdown_sockets,
)
from ._channels import Probe, release_spent_observers
from ._closing import quiet_closing_channels, silent_broker
from ._config import (
    RELEASED,
    SYNONYMS,
    RabbitMQOptions,
    key_limit,
    split_options,
    too_long,
)
from ._connect import connect_failure
from ._consumer import Consumer
from ._deliveries import UnstartedReturns
from ._group import Group, delete_group
from ._heartbeat import with_heartbeat
from ._logs import Outages
from ._publish import publish
from ._quiet_connects import quiet_failed_connects
from ._starting import start
from ._subscribe import join_alone, join_group, leave_alone, leave_group

if TYPE_CHECKING:
    from aio_pika.abc import (
        AbstractChannel,
        AbstractRobustChannel,
        AbstractRobustConnection,
    )

__all__ = ["RabbitMQTransport"]

logger = logging.getLogger("pepperpy.event.transports.rabbitmq")


class RabbitMQTransport(Transport):
    """Publishes to a RabbitMQ topic exchange and consumes through per-subscription queues.

    ``url`` is an AMQP URL (``amqp://user:pass@host:5672/vhost``, ``amqps://`` for TLS).
    Every option below can also be given in its query string
    (``amqp://host/?exchange=shop&partitions=4``); a keyword argument wins over the URL.
    Other query parameters (``heartbeat``, ``name``, TLS files) go to aio-pika; a name
    neither takes, or a value aio-pika would misread, raises :class:`ConfigurationError`
    here, as does a bad port (see ``_config.DRIVER_OPTIONS``). Without ``heartbeat`` in
    the URL the transport asks for 15 s (aio-pika's default is 60), and a connection that
    heard nothing from the broker for two heartbeat timeouts is given up (see
    ``_heartbeat``).

    * ``exchange``: the topic exchange every event goes through (durable; created if
      missing; default ``pepperpy.events``). Applications that should see each other's
      events share it.
    * ``prefetch``: unacknowledged messages per consumer (default 128, at most 65535);
      events without a key are handled concurrently up to this many, events with one
      key one after another.
    * ``partitions``: durable queues per group (default 12). A group's members split the
      partitions between them (a member takes at most ``ceil(partitions / members)``), so
      this bounds how many processes share one group's work; each key stays in one
      partition, so its order holds. 12 splits evenly over 1, 2, 3, 4, 6 or 12 members.
    * ``queue_type``: ``"quorum"`` (replicated, the default) or ``"classic"`` for the
      group queues.
    * ``max_deliveries`` (the name every transport uses; ``delivery_limit``, RabbitMQ's,
      is accepted too, and giving both raises :class:`ConfigurationError`): once one
      message was delivered this many times without an acknowledgement (its consumer
      crashed each time), the next delivery moves it to ``deadletter.<topic>`` instead
      of handling it again (default 10; ``0`` disables it). Counted by quorum queues
      only.
    * ``rebalance_interval``: seconds between checks that balance a group's active
      partitions over its member processes (default 1; 0.01 to 3,600).
    * ``ungrouped_expiry``: seconds an ungrouped subscription's queue outlives its
      consumer (default 60): a reconnect within it loses nothing; after it the broker
      deletes the queue, so an exited process leaves no backlog behind. 0.001 to
      315,360,000 (ten years): what the queue's ``x-expires`` takes, in milliseconds.
    * ``connect_timeout``, ``reconnect_interval``: seconds to wait for the broker
      (default 10), and between connection attempts, at start and after it went away
      (default 1; 0.05 to 300).
      ``start()`` and ``subscribe()`` wait at most ``connect_timeout`` for an
      unreachable broker before raising :class:`TransportError`, and ``publish()``
      takes at most that long in all, the broker's confirm included; ``close()``
      waits at most that long for it once the deliveries in progress finished.
    * ``handover_grace``: seconds a group member that takes a partition over from a
      member that lost its connection (or crashed) waits before it handles the keys that
      member had not acknowledged, whose handler may still run there (default 5; ``0``:
      no wait; at most 86,400, a day). Other keys, and partitions handed over in good
      order, do not wait; see ``docs/transport-rabbitmq.md``, "Per-key order across a
      connection loss".
    * ``max_message_size``: the broker's ``max_message_size``, in bytes (at most 512 MiB,
      as in RabbitMQ). ``publish()`` refuses an event whose message is larger before it
      sends anything, since the broker would close the channel. Default ``None``: the
      default of the broker's version, read when connecting (16 MiB since RabbitMQ 4.0,
      128 MiB before); give it when the broker's setting is another.
    """

    @checked_keywords(SYNONYMS)
    def __init__(
        self,
        url: str = "amqp://guest:guest@localhost:5672/",
        *,
        exchange: str = default(RabbitMQOptions.exchange),
        prefetch: int = default(RabbitMQOptions.prefetch),
        partitions: int = default(RabbitMQOptions.partitions),
        queue_type: str = default(RabbitMQOptions.queue_type),
        max_deliveries: int = default(RabbitMQOptions.max_deliveries),
        delivery_limit: int | None = None,
        rebalance_interval: float = default(RabbitMQOptions.rebalance_interval),
        ungrouped_expiry: float = default(RabbitMQOptions.ungrouped_expiry),
        connect_timeout: float = default(RabbitMQOptions.connect_timeout),
        reconnect_interval: float = default(RabbitMQOptions.reconnect_interval),
        handover_grace: float = default(RabbitMQOptions.handover_grace),
        max_message_size: int | None = default(RabbitMQOptions.max_message_size),
    ) -> None:
        given = given_keywords(
            {
                "exchange": exchange,
                "prefetch": prefetch,
                "partitions": partitions,
                "queue_type": queue_type,
                "max_deliveries": max_deliveries,
                "rebalance_interval": rebalance_interval,
                "ungrouped_expiry": ungrouped_expiry,
                "connect_timeout": connect_timeout,
                "reconnect_interval": reconnect_interval,
                "handover_grace": handover_grace,
                "max_message_size": max_message_size,
            }
        )
        if delivery_limit is not None:  # checked_keywords refused it given with max_deliveries
            given["max_deliveries"] = delivery_limit
        self._aio_pika = require("aio_pika", extra="rabbitmq", feature="the RabbitMQ transport")
        self._aiormq = require("aiormq", extra="rabbitmq", feature="the RabbitMQ transport")
        self.url, options = split_options(
            url,
            given,
            # what the installed aio-pika reads from the query, besides what we know of
            [p.name for p in getattr(self._aio_pika.RobustConnection, "PARAMETERS", ())],
        )
        from yarl import URL  # aio-pika's URL parser (a dependency of it)

        try:  # as aio-pika will: a mistake our checks missed is refused now, not in start()
            _ = URL(self.url).port  # the port is parsed when asked for
        except ValueError as exc:
            raise ConfigurationError(f"bad RabbitMQ URL {redact_url(self.url)}: {exc}") from None
        #: the URL aio-pika connects with: ``self.url`` with the transport's default
        #: heartbeat unless it names one (see _heartbeat)
        self._driver_url, self._heartbeat = with_heartbeat(self.url)
        self.exchange_name: str = options["exchange"]
        self.prefetch: int = options["prefetch"]
        self.partitions: int = options["partitions"]
        self.queue_type: str = options["queue_type"]
        self.max_deliveries: int = options["max_deliveries"]
        self.rebalance_interval: float = options["rebalance_interval"]
        self.ungrouped_expiry: float = options["ungrouped_expiry"]
        self.connect_timeout: float = options["connect_timeout"]
        self.reconnect_interval: float = options["reconnect_interval"]
        self.handover_grace: float = options["handover_grace"]
        #: None: the default of the broker's version (see ``_config.broker_message_limit``)
        self.max_message_size: int | None = options["max_message_size"]
        self._instance = uuid.uuid4().hex[:12]
        #: shown by ``rabbitmqctl list_connections client_properties`` and the management UI
        #: (``?name=`` in the URL names it instead, as it does for aio-pika)
        self.connection_name = dict(parse_qsl(urlsplit(self.url).query)).get(
            "name", f"pepperpy-event {self.exchange_name} pid={os.getpid()}"
        )
        self._connection: AbstractRobustConnection | None = None
        self._publisher: AbstractChannel | None = None
        self._consumers: list[Consumer] = []
        self._groups: dict[str, Group] = {}
        #: messages this process returned to their group queue unstarted (see _deliveries)
        self._returns = UnstartedReturns()
        #: whether a group's join looked at the broker's own delivery limit (once)
        self._broker_limit_checked = False
        self._declared_queues: list[str] = []
        self._private_queues: list[str] = []
        self._declared_exchanges: list[str] = [self.exchange_name]
        #: asks whether queues exist, on one channel for the transport's lifetime
        self._probe = Probe()
        #: logs once per outage (while not closed)
        self._outages = Outages(self.url, self.reconnect_interval, lambda: self._closed)
        self._closed = False
        #: set by close(): ends start()'s pause between tries to reach the broker (made by
        #: each start(), in its event loop)
        self._closing: asyncio.Event | None = None
        #: publishes under way, which close() lets finish before it closes the channel
        #: they wait on (see ``_finish_publishing``); set by it once it waits for them,
        #: after which a publish is refused with ClosedError
        self._publishing = 0
        self._published: asyncio.Event | None = None
        self._publishes_refused = False

    def __repr__(self) -> str:  # as RedisTransport's and NatsTransport's: no password
        return f"RabbitMQTransport({redact_url(self.url)!r}, exchange={self.exchange_name!r})"

    @property
    def delivery_limit(self) -> int:
        """``max_deliveries`` under RabbitMQ's name (for code written before it had one)."""
        return self.max_deliveries

    # -- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        """Connect and declare the exchange, within ``connect_timeout``.

        A broker that cannot be reached yet (connection refused or reset, as while it
        starts up) is tried again every ``reconnect_interval`` until ``connect_timeout``
        is up, then :class:`TransportError` is raised with the last failure; one that
        answers and refuses (bad credentials, a virtual host it does not open) fails at
        once. ``close()`` meanwhile ends the tries with :class:`ClosedError`.

        The connection then reconnects by itself (every ``reconnect_interval``) after a
        network failure or broker restart. Cancelled or failing half-way, ``start()``
        first closes the connection it was making (within ``connect_timeout``, even if
        cancelled again), so nothing of it keeps running or reconnecting.
        """
        await start(self)

    def _deadline(self) -> float:
        """``connect_timeout`` from now, in event loop time (for bounded broker calls)."""
        return asyncio.get_running_loop().time() + self.connect_timeout

    def _connected(self) -> bool:
        """False while the robust connection is away (lost, reconnecting) or closed."""
        connection = self._connection
        return connection is not None and connection.connected.is_set()

    async def close(self) -> None:
        """Stop consuming, finish the deliveries in progress, then disconnect.

        Messages prefetched but not started stay unacknowledged and go back to their
        group's queue (in order) when the connection closes, for another member to take.
        The queues of ungrouped subscriptions are deleted: nobody else reads them.

        Handlers in progress always finish, whatever the network does, and so do the
        events they publish. After them, publishes under way get their confirms (within
        ``connect_timeout``) before the connection closes, and later ones raise
        :class:`ClosedError`. close() waits at most ``connect_timeout`` for the broker
        (channels, queue deletion) and as long again for the connection to close; it
        never raises a
        driver error, and the connection never comes back after it: a broker that is
        unreachable meanwhile is simply not told (an ungrouped queue it could not delete
        expires after ``ungrouped_expiry``; unacknowledged messages return to their
        queues when the broker notices the connection is gone; a broker that let the
        time pass is logged once, a WARNING). Later calls return at once.
        """
        if self._closed:
            return
        self._closed = True
        if self._closing is not None:
            self._closing.set()
        connection = self._connection
        # the calls given up below log DEBUG records: the WARNING is ours (_closing)
        quiet_closing_channels(connection)
        try:
            deadline = await self._stop_consuming()
            await self._finish_publishing()
        finally:  # cancelled too: nothing publishes on the connection closed below
            self._publishes_refused = True
            self._connection = self._publisher = None
            self._probe.forget()
            if connection is not None:  # closing it for good: the robust connection no
                # longer reconnects, even when the broker could not be told
                await quietly(connection.close(), "closing", logger, deadline=self._deadline())
        if self._outages.lost_at is None:  # an outage logged said it already
            silent_broker(self.url, deadline, self.connect_timeout)

    async def _finish_publishing(self) -> None:
        """Refuse new publishes, and wait (at most ``connect_timeout``) for those under
        way to get the broker's confirm: closing their channel would fail them with
        ``stored=None`` though the broker may be about to confirm them.

        Runs once the handlers finished: the events they publish (dead letters
        included) go out as usual until then.
        """
        self._publishes_refused = True
        if not self._publishing:
            return
        self._published = published = asyncio.Event()
        try:
            async with asyncio.timeout(self.connect_timeout):
                await published.wait()
        except TimeoutError:  # each publish gives up within connect_timeout by itself
            logger.debug("closing with %d publishes unconfirmed", self._publishing)

    async def _stop_consuming(self) -> float:
        """Stop the consumers and close their channels; returns the deadline the broker
        had (``connect_timeout`` from when the handlers were done)."""
        for consumer in self._consumers:
            consumer.retire()
        for group in list(self._groups.values()):
            await group.stop_rebalancing()
        await asyncio.gather(*(consumer.finish_running() for consumer in self._consumers))
        # from here on only the broker is waited for, and only so long
        deadline = self._deadline()
        # closing the channels first returns the unstarted messages to their queues and
        # spares the broker cancelling consumers of the queues deleted below
        await asyncio.gather(*(consumer.close_channel(deadline) for consumer in self._consumers))
        for name in self._private_queues:
            await self._delete_private_queue(name, deadline)
        return deadline

    async def _delete_private_queue(self, name: str, deadline: float) -> None:
        """Delete an ungrouped subscription's queue, if the broker can be reached now.

        While the connection is away, the robust channel would wait for it forever; the
        queue carries ``x-expires``, so the broker deletes it ``ungrouped_expiry`` after
        its consumer went, and skipping it loses nothing.
        """
        publisher = self._publisher
        if publisher is None or not self._connected():
            logger.debug("not deleting queue %s: the broker is unreachable; it expires", name)
            return
        await quietly(publisher.queue_delete(name), f"deleting {name}", logger, deadline=deadline)

    def outage(self) -> float | None:
        """Seconds since the connection to RabbitMQ was lost; None while it is up."""
        return self._outages.down_for()

    def outage_reason(self) -> tuple[str, str] | None:
        """Why the connection to RabbitMQ is not back (the latest failure): ``"credentials
        refused"``, ``"access refused"`` (the virtual host, or an exchange or queue the user
        may not declare), ``"tls refused"`` (reconnections fail their TLS handshake for
        good) or ``"unreachable"``."""
        return self._outages.reason()

    def abandon(self) -> None:
        """Drop the connection of an event loop that ended; shut its socket down."""
        self._closed = True
        for group in self._groups.values():
            group.abandon()
        self._consumers = []
        self._groups = {}
        connection, self._connection, self._publisher = self._connection, None, None
        self._probe.forget()
        underlay = getattr(connection, "transport", None)  # the aiormq connection
        shutdown_sockets([getattr(underlay, "_Connection__writer", None)])

    async def delete_topology(self) -> None:
        """Delete the exchange and every group queue and exchange this transport declared.

        Meant for tests and throw-away environments: it drops the groups' backlog. Works
        after :meth:`close` (it opens a connection of its own).
        """
        aio_pika = self._aio_pika
        errors = self._aiormq.exceptions
        try:
            with quiet_failed_connects():  # aiormq's ERROR per try: said in the error
                async with asyncio.timeout(self.connect_timeout):
                    connection = await aio_pika.connect(
                        self._driver_url, timeout=self.connect_timeout
                    )
        except (TimeoutError, OSError, aio_pika.exceptions.AMQPError) as exc:
            if isinstance(exc, TimeoutError) and not str(exc):
                raise TransportError(
                    f"cannot connect to RabbitMQ at {redact_url(self.url)}: no answer within "
                    f"connect_timeout ({self.connect_timeout}s)"
                ) from exc
            raise TransportError(connect_failure(self.url, exc)) from exc
        # each step bounded: a broker that stops answering must not hang a tear-down
        try:
            async with asyncio.timeout(self.connect_timeout):
                channel = await connection.channel()
                for queue in self._declared_queues:
                    await channel.queue_delete(queue)
                    await channel.queue_delete(queue + RELEASED)  # if one is left (it expires)
                for exchange in reversed(self._declared_exchanges):
                    await channel.exchange_delete(exchange)
        except (TimeoutError, OSError, aio_pika.exceptions.AMQPError) as exc:
            if isinstance(exc, errors.ChannelAccessRefused):
                said = f"RabbitMQ refuses the user access ({exc.args[0] if exc.args else exc})"
            elif isinstance(exc, TimeoutError) and not str(exc):
                said = f"no answer within connect_timeout ({self.connect_timeout}s)"
            else:
                said = str(exc) or repr(exc)
            raise TransportError(
                f"cannot delete the topology of exchange {self.exchange_name!r} at "
                f"{redact_url(self.url)}: {said}"
            ) from exc
        finally:
            await quietly(connection.close(), "closing", logger, deadline=self._deadline())

    # -- publishing -------------------------------------------------------------------

    async def publish(self, event: Event, *, key: str | None = None) -> None:
        """Send ``event`` to the exchange; returns once the broker confirmed it.

        If the connection is down, waits for the robust connection to come back and
        sends once more; a confirm lost with the connection can so make a duplicate,
        which at-least-once delivery allows. The whole call ends within
        ``connect_timeout``: a confirm that does not come (a silent connection, which
        heartbeats give up only after ``2 * heartbeat`` seconds) raises
        :class:`TransportError` with ``stored=None``.
        """
        if self._publishes_refused:  # close() is past waiting for publishes
            raise ClosedError("the RabbitMQ transport is closed")
        self._publishing += 1
        try:
            await publish(self, event, key)
        finally:
            self._publishing -= 1
            if not self._publishing and self._published is not None:
                self._published.set()

    # -- subscribing ------------------------------------------------------------------

    def check_pattern(self, pattern: str) -> None:
        """A pattern is a binding key, which AMQP limits to 255 bytes; the topics it
        matches leave room for their dead letter's prefix (see ``_config.key_limit``)."""
        problem = too_long(pattern, "the pattern")
        if problem is not None:
            position = overflow_index(pattern, key_limit(pattern))
            raise PatternError(pattern, position or 0, problem)

    async def subscribe(self, subscription: Subscription) -> None:
        """Declare and bind the subscription's queue(s) and start consuming from them."""
        if self._closed:
            raise ClosedError("the RabbitMQ transport is closed")
        since = cancelling()  # it may run in the cleanup of a cancelled task
        if self._connection is None:
            await self.start()
        pattern = subscription.pattern
        parse_pattern(pattern)
        problem = too_long(pattern, f"pattern {shown(pattern)}")
        if problem is not None:
            raise TransportError(f"cannot subscribe: {problem}")
        if not self._connected():  # away: wait (at most connect_timeout) for it to return
            await self._until_connected(f"subscribing to {pattern!r}")
        errors = self._aiormq.exceptions
        try:
            if subscription.group is None:
                await join_alone(self, subscription)
            else:
                await join_group(self, subscription)
        except (
            self._aio_pika.exceptions.AMQPError,
            errors.ChannelInvalidStateError,  # the connection went away meanwhile
            asyncio.CancelledError,
        ) as exc:
            if isinstance(exc, asyncio.CancelledError) and cancelled_by_caller(since):
                raise
            raise TransportError(
                f"cannot set up the RabbitMQ subscription to {pattern!r}: {str(exc) or repr(exc)}"
            ) from exc

    async def _until_connected(self, what: str) -> None:
        """Wait for a lost connection to come back, at most ``connect_timeout``."""
        connection = self._connection
        if connection is None:
            raise ClosedError("the RabbitMQ transport is closed")
        try:
            async with asyncio.timeout(self.connect_timeout):
                await connection.connected.wait()
        except TimeoutError as exc:
            raise TransportError(
                f"RabbitMQ at {redact_url(self.url)} unreachable while {what};"
                f" waited {self.connect_timeout}s for the connection"
                f"{self._outages.refusals.note()}"
            ) from exc
        if self._closed:
            raise ClosedError("the RabbitMQ transport is closed")

    async def unsubscribe(self, subscription: Subscription) -> None:
        """Stop delivering to ``subscription`` once its deliveries in progress are done.

        Another member of its group in this process takes its turns. The last one closes
        its channels, which hands the partition queues (and the messages it had prefetched
        but not started, in order) to the members in other processes, and leaves the
        group's presence queue; the durable group queues stay. An ungrouped
        subscription's queue is deleted.

        Cancelled while deliveries are still in progress, it closes the channels all the
        same before the cancellation propagates: those deliveries finish, but their
        acknowledgements no longer reach the broker, which delivers the messages again
        (to another member, for a group).
        """
        if subscription.group is not None:
            await leave_group(self, subscription)
        else:
            await leave_alone(self, subscription)

    async def delete_group(self, subscription: Subscription) -> None:
        """Delete the group's partition queues, with the messages in them, its release
        marks, presence queue and lanes exchanges, which unbinds it from the exchange.

        The broker cancels the consumers that members in other processes hold on them
        (see ``docs/transport-rabbitmq.md``, "Retiring a group", for what they do then).
        """
        if self._closed:
            raise ClosedError("the RabbitMQ transport is closed")
        if self._connection is None:
            await self.start()
        if not self._connected():
            await self._until_connected(f"deleting group {subscription.group!r}")
        errors = self._aiormq.exceptions
        try:
            async with asyncio.timeout(self.connect_timeout):
                await delete_group(self, subscription)
        except (
            self._aio_pika.exceptions.AMQPError,
            errors.ChannelInvalidStateError,
            TimeoutError,
        ) as exc:
            raise TransportError(
                f"cannot delete group {subscription.group!r} on {subscription.pattern!r}: "
                f"{str(exc) or repr(exc)}"
            ) from exc
        logger.info("deleted group %r on %r", subscription.group, subscription.pattern)

    def _declared(self, *, queue: str | None = None, exchanges: tuple[str, ...] = ()) -> None:
        """Remember a queue or exchanges for :meth:`delete_topology` (once each: a group
        joined again after leaving declares the same ones)."""
        if queue is not None and queue not in self._declared_queues:
            self._declared_queues.append(queue)
        for name in exchanges:
            if name not in self._declared_exchanges:
                self._declared_exchanges.append(name)

    async def _channel(self, *, consuming: bool = True) -> AbstractRobustChannel:
        """A new robust channel (with the prefetch limit when ``consuming``).

        Raises aiormq's ``ChannelInvalidStateError`` while the connection is away
        (aio-pika would raise a bare ``RuntimeError``).
        """
        connection = self._connection
        if connection is None:
            raise ClosedError("the RabbitMQ transport is closed")
        if connection.transport is None:
            raise self._aiormq.exceptions.ChannelInvalidStateError(
                "the connection to RabbitMQ is away (reconnecting)"
            )
        channel = await connection.channel(publisher_confirms=False)
        if consuming:
            await channel.set_qos(prefetch_count=self.prefetch)
        return channel

    async def _close_channel(self, channel: AbstractChannel, deadline: float) -> None:
        """Close a channel of ours (never raising, until ``deadline``) and release what
        aio-pika left registered for it on the connection (see ``_channels``)."""
        await quietly(channel.close(), "closing a channel", logger, deadline=deadline)
        release_spent_observers(self._connection)

    async def _queue_exists(self, name: str) -> bool:
        """True when queue ``name`` exists on the broker (a passive declare)."""
        if self._connection is None:
            raise ClosedError("the RabbitMQ transport is closed")
        return await self._probe.exists(self._connection, name)

    async def _take_release_mark(self, name: str) -> bool:
        """Delete the release mark ``name`` if it exists; True if it did (see _handover)."""
        if self._connection is None:
            raise ClosedError("the RabbitMQ transport is closed")
        return await self._probe.take(self._connection, name)

    async def _queue_consumers(self, name: str) -> int | None:
        """How many consumers queue ``name`` has; None when it does not exist (a passive
        declare on the probe's channel, which its 404 closes, never on one of ours)."""
        if self._connection is None:
            raise ClosedError("the RabbitMQ transport is closed")
        return await self._probe.consumers(self._connection, name)

    def _group_queue_arguments(self) -> dict[str, Any]:
        arguments: dict[str, Any] = {"x-single-active-consumer": True}
        if self.queue_type == "quorum":
            arguments["x-queue-type"] = "quorum"
        return arguments
