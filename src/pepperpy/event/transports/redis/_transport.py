"""The :class:`RedisTransport`: publish with ``XADD``, consume with consumer groups."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..._bus_logging import log_fields
from ..._deadletter import DEAD_LETTER_PREFIX, dead_letter_event, partition_key
from ..._deps import require
from ..._errors import ClosedError, ConfigurationError, TransportError
from ..._event import Event
from ..._redact import redact_url
from .._url_options import checked_keywords, default, given_keywords
from ..base import Subscription, Transport, check_key, shutdown_sockets
from ._appends import Appends
from ._config import CLIENT_DEFAULTS, RedisOptions, client_options, parse_url, partition_of
from ._dedupe import Lookout, Publication, identify
from ._group import GroupMember
from ._leases import delete_group
from ._listener import Listener
from ._outage import Outages, server_of
from ._outcome import with_outcome
from ._replicas import Replicas
from ._topology import connect, delete_namespace
from ._trimming import trim_acknowledged, trim_periodically
from ._wire import (
    EVENT_FIELD,
    TOPIC_FIELD,
    Backoff,
    connection_errors,
    logger,
    pool_errors,
    refusals,
)

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["RedisTransport"]

_FEATURE = "the Redis transport"

#: longest pause (seconds) between two looks for a free connection of an exhausted pool
_POOL_POLL = 0.02
#: how publishes name themselves to the outages: a success ends an outage no consumer
#: loop is still failing (on a bus that only publishes, the only way one ends)
_PUBLISHING = "publish"


class RedisTransport(Transport):
    """Redis Streams under :class:`~pepperpy.event.EventBus` (``redis://`` URLs).

    Events are appended to ``partitions`` streams named ``<namespace>:stream:<n>``; the
    partition is CRC-32 of the event's key (or, without a key, of its topic) modulo the
    partition count, so one key's events stay in one stream, in order. Groups are Redis
    consumer groups whose members lease partitions; ungrouped subscribers read live with
    ``XREAD``. Options may also be given in the URL's query string
    (``redis://host/0?namespace=orders&partitions=32``); see :class:`RedisOptions`. A
    keyword argument given explicitly wins over the URL, even one equal to the default.
    """

    @checked_keywords()
    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        namespace: str = default(RedisOptions.namespace),
        partitions: int = default(RedisOptions.partitions),
        batch_size: int = default(RedisOptions.batch_size),
        lease_ttl: float = default(RedisOptions.lease_ttl),
        max_deliveries: int = default(RedisOptions.max_deliveries),
        maxlen: int | None = default(RedisOptions.maxlen),
        replicas: int = default(RedisOptions.replicas),
        connect_timeout: float = default(RedisOptions.connect_timeout),
        max_backoff: float = default(RedisOptions.max_backoff),
        trim_interval: float | None = default(RedisOptions.trim_interval),
        retention: float = default(RedisOptions.retention),
    ) -> None:
        self._redis = require("redis.asyncio", extra="redis", feature=_FEATURE)
        self._exceptions = require("redis.exceptions", extra="redis", feature=_FEATURE)
        self._retry = require("redis.asyncio.retry", extra="redis", feature=_FEATURE)
        self._backoff = require("redis.backoff", extra="redis", feature=_FEATURE)
        given = given_keywords(
            {
                "namespace": namespace,
                "partitions": partitions,
                "batch_size": batch_size,
                "lease_ttl": lease_ttl,
                "max_deliveries": max_deliveries,
                "maxlen": maxlen,
                "replicas": replicas,
                "connect_timeout": connect_timeout,
                "max_backoff": max_backoff,
                "trim_interval": trim_interval,
                "retention": retention,
            }
        )
        self._client_url, self.options = parse_url(url, given)
        # refuse a bad URL here, not at the first publish
        self._url_options = client_options(self._client_url, self._redis.connection)
        self.url = url
        self._unreachable = connection_errors(self._exceptions)
        self._refused = refusals(self._exceptions)  # subclasses of the above: caught first
        self._pool_full = pool_errors(self._exceptions)
        socket_timeout = self._url_options.get("socket_timeout", CLIENT_DEFAULTS["socket_timeout"])
        #: looks for copies of an XADD sent with no reply, before it is sent again
        self._lookout = Lookout()
        self._replicas = Replicas(
            self.options, socket_timeout, self._exceptions, self._unreachable, self._lookout
        )
        self._streams = [self.options.stream(p) for p in range(self.options.partitions)]
        #: connection loss as the consumers meet it: one warning per outage
        self._outages = Outages(
            server_of(self._client_url), self.options.max_backoff, refusals(self._exceptions)
        )
        self._routes: dict[str, str] = {}
        #: the XADDs: concurrent publishes share a pipeline
        self._appends = Appends(self.options)
        self._client: Redis | None = None
        self._listener: Listener | None = None
        self._members: list[GroupMember] = []
        self._start_lock: asyncio.Lock | None = None
        self._trimmer: asyncio.Task[None] | None = None
        self._closed = False
        #: set by close() once its consumers' handlers have finished (at once if it is
        #: cancelled): publishes are refused from then on, those of the handlers it
        #: waits for (dead letters included) go through until then
        self._publishes_refused = False
        #: publishes under way: close() waits for them before it closes the client
        self._publishing = 0
        #: set by the last publish to end once close() waits for them
        self._settled: asyncio.Event | None = None
        #: close() has closed the client: a publish it gave up waiting for closes it again
        self._disconnected = False
        #: what a cancelled close() left to do: wait for the consumers, then disconnect
        self._finishing: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        shown = redact_url(self._client_url)
        return f"RedisTransport({shown!r}, namespace={self.options.namespace!r})"

    # -- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        """Connect and check the partition count; raise ``TransportError`` after
        ``connect_timeout`` seconds if Redis does not answer (unreachable or silent)."""
        if self._closed:
            raise ClosedError("the Redis transport is closed")
        if self._start_lock is None:
            self._start_lock = asyncio.Lock()
        async with self._start_lock:
            if self._client is not None:
                return
            if self._closed:  # closed while this start waited for another one
                raise ClosedError("the Redis transport is closed")
            try:
                # identified connections: what a publish whose reply was lost needs
                client = self._new_client(redis_connect_func=identify)
            except ValueError as exc:
                raise ConfigurationError(f"bad Redis URL {redact_url(self.url)!r}: {exc}") from exc
            try:
                await self._retrying(
                    "connecting",
                    client,
                    lambda: connect(client, self.options, self._client_url, self._exceptions),
                )
            except BaseException:
                await client.aclose()
                raise
            if self._closed:  # close() came meanwhile: it saw no client to close
                await client.aclose()
                raise ClosedError("the Redis transport was closed while connecting")
            self._client = client
            if self.options.trim_interval is not None:
                self._trimmer = asyncio.get_running_loop().create_task(
                    trim_periodically(self, self.options.trim_interval),
                    name="pepperpy-redis-trim",
                )

    def _new_client(self, **overrides: Any) -> Redis:
        """A client with a pool of its own (see docs/transport-redis.md, "Connections").

        Its socket timeout and pool size are ours (``CLIENT_DEFAULTS``) unless the URL
        sets them, whatever the installed redis-py's defaults are.
        """
        settings = {
            name: value for name, value in CLIENT_DEFAULTS.items() if name not in self._url_options
        }
        settings["retry"] = self._retry.Retry(self._backoff.NoBackoff(), 1)
        settings["socket_connect_timeout"] = min(5.0, self.options.connect_timeout)
        client: Redis = self._redis.Redis.from_url(self._client_url, **{**settings, **overrides})
        return client

    def _reader_client(self) -> Redis:
        """One connection outside the shared pool, for a group worker's blocking reads.

        redis-py does not send a command again on this one when its connection breaks:
        ``XREADGROUP ... >`` is not idempotent. Its first run may have handed entries to
        us (Redis moved them into our pending list) when the reply was lost; sent again,
        it reads past them, and with no error reaching the worker they stayed pending
        with a live member, never delivered while it held the partition. The worker sees
        the error instead, and claims the partition's pending entries (its own included)
        before it reads on.
        """
        return self._new_client(
            max_connections=1, retry=self._retry.Retry(self._backoff.NoBackoff(), 0)
        )

    async def close(self) -> None:
        """Stop consuming after the events in progress, leave groups, disconnect.

        The handlers in progress finish first, and what they publish (their follow-up
        events, dead letters) goes out as usual meanwhile. Then publishes are refused
        with :class:`ClosedError` (``stored`` False), and those under way finish
        (within ``connect_timeout``), making no new attempt. A cancelled close()
        refuses publishes at once and waits for none; the consumers still finish their
        handlers in the background, and the client closes after them. Nothing of the
        client is left connected afterwards.
        """
        if self._closed:
            return
        self._closed = True
        # no handler to wait for: refused from now
        self._publishes_refused = not self._members and self._listener is None
        stopped = False
        try:
            await self._stop_consuming()
            stopped = True
            self._publishes_refused = True
            await self._publishes_settled()
        finally:  # cancelled too: no publish starts on the client closed below
            self._publishes_refused = True
            self._disconnected = True
            if stopped:
                if self._client is not None:
                    await self._client.aclose()
            else:  # the handlers' acknowledgements would reconnect a client closed now
                self._finishing = asyncio.get_running_loop().create_task(
                    self._disconnect_after_consumers(), name="pepperpy-redis-close"
                )

    async def _disconnect_after_consumers(self) -> None:
        """The rest of a cancelled close(): the consumers' handlers finish and are
        acknowledged, the groups are left, then the client closes."""
        try:
            await self._stop_consuming()
        finally:
            if self._client is not None:
                try:
                    await self._client.aclose()
                except Exception:  # nobody awaits this task: say it here
                    logger.exception("closing the Redis client after a cancelled close failed")

    async def _stop_consuming(self) -> None:
        """Stop trimming; close the consumers once their handlers in progress finished."""
        if self._trimmer is not None:
            self._trimmer.cancel()
            try:
                await self._trimmer
            except asyncio.CancelledError:
                pass
            except Exception:  # a background task's failure never stops the shutdown
                logger.exception("the Redis trimming task had failed")
        closing = [member.close() for member in self._members]
        if self._listener is not None:
            closing.append(self._listener.close())
        for outcome in await asyncio.gather(*closing, return_exceptions=True):
            if isinstance(outcome, Exception):
                logger.error("closing a Redis consumer failed", exc_info=outcome)

    async def _publishes_settled(self) -> None:
        """Wait for the publishes under way, at most ``connect_timeout`` seconds.

        Closing the client under them cut their ``XADD`` replies, and a publish whose
        reply was lost looks for its event on a new connection (``Lookout``), which
        nothing closed after close() had returned (audit 13, finding 3). Each publish
        gives up by its own ``connect_timeout``, and makes no new attempt once publishes
        are refused (``_retrying``), so the wait is short but for a silent Redis;
        one still running after it closes the client again when it ends (:meth:`publish`).
        """
        if not self._publishing:
            return
        self._settled = settled = asyncio.Event()
        try:
            async with asyncio.timeout(self.options.connect_timeout):
                await settled.wait()
        except TimeoutError:
            logger.warning(
                "closing the Redis transport with %d publish(es) still under way after %gs "
                "(connect_timeout): closing their connections",
                self._publishing,
                self.options.connect_timeout,
            )

    def outage(self) -> float | None:
        """Seconds since a consumer (or a publish) found Redis unreachable; None while
        every loop that failed since has had an answer again."""
        return self._outages.down_for()

    def outage_reason(self) -> tuple[str, str] | None:
        """Why Redis is out of reach (the latest failure): ``"credentials refused"`` or
        ``"unreachable"``, with what Redis or the network said; None while reachable."""
        return self._outages.reason()

    def abandon(self) -> None:
        """Drop the clients of an event loop that ended; shut their sockets down."""
        self._closed = self._publishes_refused = True
        clients: list[Any] = [self._client]
        for member in self._members:
            clients += member.abandon()
        self._client = self._listener = self._trimmer = self._finishing = None
        self._appends.abandon()
        self._members = []
        writers: list[Any] = []
        for client in clients:
            pool = getattr(client, "connection_pool", None)
            for connection in [
                *getattr(pool, "_available_connections", ()),
                *getattr(pool, "_in_use_connections", ()),
            ]:
                writers.append(getattr(connection, "_writer", None))
        shutdown_sockets(writers)

    async def __aenter__(self) -> RedisTransport:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _require_client(self) -> Redis:
        if self._closed:
            raise ClosedError("the Redis transport is closed")
        if self._client is None:
            raise TransportError("the Redis transport is not started: call start() first")
        return self._client

    # -- publishing -------------------------------------------------------------------

    def stream_for(self, topic: str, key: str | None = None) -> str:
        """The stream an event of ``topic`` with ``key`` is appended to."""
        routing = topic if key is None else key
        stream = self._routes.get(routing)
        if stream is None:
            if key is not None:
                check_key(key)  # once per key routed, not per publish
            stream = self._streams[partition_of(routing, self.options.partitions)]
            if len(self._routes) < 8192:
                self._routes[routing] = stream
        return stream

    async def publish(self, event: Event, *, key: str | None = None) -> None:
        """``XADD`` the event's CloudEvents JSON; returns once Redis has it.

        Raises :class:`TransportError` once ``connect_timeout`` seconds have passed
        without Redis taking the event: unreachable (retried meanwhile) or silent (a
        network partition); while every connection of the pool is in use, waits as long
        for one to come free, then raises :class:`TransportError` naming the pool's
        ``max_connections``. With ``replicas`` set, also waits for that many replicas.

        A publish that returns normally stored the event exactly once: an ``XADD`` that
        got no reply is not sent again before the transport has made sure it is not in
        the stream and can no longer arrive (docs/transport-redis.md, "Each publish
        stores its event once").

        The error's ``stored`` says whether the event may be in Redis: ``False`` when no
        ``XADD`` was sent (Redis refused every connection, the pool had none free), Redis
        answered it with an error, or the transport found it had not arrived; ``None``
        when one went out, got no answer, and Redis could not be asked whether it came;
        ``True`` when Redis has it but the replicas did not confirm it.

        While :meth:`close` waits for the handlers in progress, publishes go through as
        usual (a handler's follow-up event, a dead letter). Once they have finished,
        raises :class:`ClosedError` (``stored`` False); a publish already under way
        then finishes, but makes no new attempt.
        """
        if self._publishes_refused:
            raise ClosedError(
                f"cannot publish {event.type!r}: the Redis transport is closed", stored=False
            )
        self._publishing += 1
        try:
            await self._publish(event, key)
        finally:
            self._publishing -= 1
            if self._publishes_refused and not self._publishing:
                await self._publishes_ended()

    async def _publishes_ended(self) -> None:
        """The last publish under way ended after close() refused publishes: tell
        close(), or, if it gave up waiting (or was cancelled), close the client again (an
        attempt it cut off may have reconnected it)."""
        if self._settled is not None:
            self._settled.set()
        if self._disconnected and self._client is not None:
            try:
                await self._client.aclose()
            except Exception:  # the publish's own outcome is what its caller gets
                logger.exception("closing the Redis client after the last publish failed")

    async def _publish(self, event: Event, key: str | None) -> None:
        if self._client is None:
            try:
                await self.start()
            except TransportError as exc:
                exc.stored = False  # nothing was sent
                raise
            except ClosedError as exc:  # close() came while it connected
                raise ClosedError(str(exc), stored=False) from exc
        client = self._client
        if client is None or self._publishes_refused:  # close() came meanwhile
            raise ClosedError(
                f"cannot publish {event.type!r}: the Redis transport is closed", stored=False
            )
        stream = self.stream_for(event.type, key)
        payload = event.to_json()
        fields: dict[Any, Any] = {TOPIC_FIELD: event.type, EVENT_FIELD: payload}
        publication = Publication(stream, fields, event.id, payload)
        deadline = asyncio.get_running_loop().time() + self.options.connect_timeout
        if self.options.replicas:
            await self._replicas.publish(client, event, publication, deadline, self._retrying)
            self._outages.reached(_PUBLISHING)
            return

        async def again() -> None:
            """Append it, unless a copy sent earlier with no reply is there (or can still
            get there: :class:`~._dedupe.Lookout` makes sure it cannot)."""
            if publication.appended:  # answered, before the pipeline it was in broke
                return
            if publication.unknown and await self._lookout.already_stored(client, publication):
                return
            await self._appends.send(client, publication, deadline)

        try:
            await self._appends.send(client, publication, deadline)
        except self._refused as exc:  # credentials refused on a new connection
            refused = TransportError(f"Redis refused to publish {event.type!r}: {exc}")
            raise with_outcome(refused, unknown=publication.unknown) from exc
        except self._unreachable as exc:
            await self._retrying(
                f"publishing {event.type!r}",
                client,
                again,
                deadline=deadline,
                error=exc,
                unknown=lambda: publication.unknown,
            )
        except self._exceptions.RedisError as exc:
            refused = TransportError(f"Redis refused to publish {event.type!r}: {exc}")
            raise with_outcome(refused, unknown=publication.unknown) from exc
        # a bus that only publishes has no consumer loop to notice Redis coming back
        self._outages.reached(_PUBLISHING)

    async def _retrying(
        self,
        what: str,
        client: Redis,
        operation: Any,
        *,
        deadline: float | None = None,
        error: BaseException | None = None,
        unknown: Callable[[], bool] | None = None,
        after_close: bool = False,
    ) -> Any:
        """Run ``operation()`` until Redis answers or ``deadline`` (loop time) has passed.

        The deadline defaults to ``connect_timeout`` from now; ``error`` is what a first
        attempt, made by the caller, raised. Retries while Redis is unreachable, and
        while ``client``'s pool has no free connection: one comes back as soon as a
        command in flight returns, so that wait polls every few milliseconds rather than
        backing off like a reconnect. Each attempt is cut off at the deadline, so a
        silent Redis (a network partition) fails as fast as an unreachable one.

        ``unknown``: the operation is a publish, and tells whether its event may be
        stored (a copy went out and got no reply): the error raised says so. A publish's
        failed attempts are reported to the transport's outages (as the consumer loops
        report theirs), so a bus that only publishes shows an outage in ``health()`` and
        the log; :meth:`publish` reports its success.

        No attempt starts once :meth:`close` has begun (unless ``after_close``: an
        operation with a client of its own), nor, for a publish, once close() refuses
        publishes (its handlers finished): a publish raises :class:`TransportError`
        saying whether its event may be stored, anything else :class:`ClosedError`.
        """
        loop = asyncio.get_running_loop()
        if deadline is None:
            deadline = loop.time() + self.options.connect_timeout
        backoff = Backoff(self.options.max_backoff)
        pool_wait = Backoff(_POOL_POLL, first=0.001)
        while True:
            stopped = self._closed if unknown is None else self._publishes_refused
            if stopped and not after_close:
                raise self._closing(what, error, unknown) from error
            if error is not None:
                pool_full = isinstance(error, self._pool_full)
                if unknown is not None and not pool_full:
                    self._outages.lost(None, what, error)  # one-off: never holds it open
                pause = pool_wait.next() if pool_full else backoff.next()
                if loop.time() + min(pause, 0.001 if pool_full else 0.05) >= deadline:
                    failure = self._gave_up(what, client, error)
                    if unknown is not None:
                        failure = with_outcome(failure, unknown=unknown())
                    raise failure from error
                await asyncio.sleep(min(pause, deadline - loop.time()))
            try:
                async with asyncio.timeout_at(deadline):
                    return await operation()
            except self._refused as exc:  # Redis answered: trying again changes nothing
                failure = TransportError(f"Redis refused {what}: {exc}")
                if unknown is not None:
                    failure = with_outcome(failure, unknown=unknown())
                raise failure from exc
            except self._unreachable as exc:  # the pool's limit included; TimeoutError too
                # an attempt cut off at the deadline says less than the error before it
                if error is None or type(exc) is not TimeoutError:
                    error = exc
            except self._exceptions.RedisError as exc:
                failure = TransportError(f"Redis refused {what}: {exc}")
                if unknown is not None:
                    failure = with_outcome(failure, unknown=unknown())
                raise failure from exc

    def _closing(
        self, what: str, error: BaseException | None, unknown: Callable[[], bool] | None
    ) -> Exception:
        """What ``_retrying`` raises instead of an attempt once the transport is closing."""
        after = f" after: {str(error) or type(error).__name__}" if error is not None else ""
        if unknown is None:
            return ClosedError(f"the Redis transport was closed while {what}{after}")
        failure = TransportError(
            f"the Redis transport was closed while {what}; not tried again{after}"
        )
        return with_outcome(failure, unknown=unknown())

    def _gave_up(self, what: str, client: Redis, error: BaseException) -> TransportError:
        if isinstance(error, self._pool_full):
            return TransportError(
                f"no free Redis connection while {what} (waited "
                f"{self.options.connect_timeout}s): "
                f"{self._outages.explain(error, self._pool_full, client)}"
            )
        return TransportError(
            f"Redis at {redact_url(self._client_url)} unreachable while {what} "
            f"(gave up after {self.options.connect_timeout}s): {str(error) or 'no answer'}"
        )

    def _dead_letter_fields(self, event: Event, group: str, deliveries: int) -> dict[str, Any]:
        """The log record fields of an event the broker side dead-letters."""
        return log_fields(
            "broker_dead_letter",
            event_id=event.id,
            event_type=event.type,
            group=group,
            deliveries=deliveries,
            transport=self._outages.where,
        )

    async def _publish_dead_letter(self, event: Event, group: str, deliveries: int) -> None:
        """Move an event that kept failing delivery to ``deadletter.<topic>``."""
        if event.type.startswith(DEAD_LETTER_PREFIX):
            logger.error(
                "dropping dead letter %s (%s): its delivery kept failing",
                event.type,
                event.id,
                extra=self._dead_letter_fields(event, group, deliveries),
            )
            return
        logger.error(
            "event %s (%s) was delivered %d times to group %r without being acknowledged; "
            "moving it to %s",
            event.type,
            event.id,
            deliveries,
            group,
            DEAD_LETTER_PREFIX + event.type,
            extra=self._dead_letter_fields(event, group, deliveries),
        )
        dead = dead_letter_event(
            event,
            reason=f"delivered {deliveries} times without acknowledgement",
            attempts=deliveries,
            group=group,
        )
        if dead is not None:
            await self.publish(dead, key=partition_key(dead))

    # -- subscribing ------------------------------------------------------------------

    def _read_ahead(self) -> int:
        """The ungrouped subscriptions' events read and queued (up to ``batch_size``
        per partition each), which close() delivers before it returns."""
        return 0 if self._listener is None else self._listener.read_ahead()

    async def subscribe(self, subscription: Subscription) -> None:
        """Register with Redis; events published after this returns are not missed."""
        if self._client is None:
            await self.start()
        client = self._require_client()
        if subscription.group is None:
            if self._listener is None:
                self._listener = Listener(client, self.options, self._exceptions, self._outages)
            listener = self._listener
            await self._retrying("subscribing", client, lambda: listener.add(subscription))
            return
        member = GroupMember(
            subscription,
            client,
            self.options,
            self._exceptions,
            self._publish_dead_letter,
            self._reader_client,
            self._outages,
        )
        await self._retrying(f"joining group {subscription.group!r}", client, member.start)
        self._members.append(member)

    async def unsubscribe(self, subscription: Subscription) -> None:
        """Stop delivering to ``subscription`` once its events in progress are done.

        A group member acknowledges what it finished, gives its partition leases back and
        leaves the member set, so the other members take its partitions (and claim what
        it left pending) at their next heartbeat; the consumer group stays.
        """
        if subscription.group is None:
            if self._listener is not None:
                await self._listener.remove(subscription)
            return
        for member in self._members:
            if member.sub is subscription:
                self._members.remove(member)
                await member.close()
                return

    async def delete_group(self, subscription: Subscription) -> None:
        """Destroy the group's consumer group on every partition stream (dropping what it
        had not read, and what it had pending) and delete its member set, leases and
        handover marks; the next :meth:`trim` no longer keeps entries for it.

        A member still running in another process finds its consumer group gone at its
        next read and makes it anew where it had read up to (logging an error), and its
        next heartbeat adds it to a new member set: the group lives on from there.
        """
        if self._client is None:
            await self.start()
        client = self._require_client()
        group = subscription.group
        destroyed = await self._retrying(
            f"deleting group {group!r}",
            client,
            lambda: delete_group(client, self.options, subscription),
        )
        logger.info(
            "deleted group %r on %r (its consumer group was on %d of %d streams)",
            group,
            subscription.pattern,
            destroyed,
            self.options.partitions,
        )

    async def delete_topology(self) -> None:
        """Delete every key under ``<namespace>:``, of every process using it: the
        partition streams with their events and consumer groups, the partition count,
        every group's members, leases and handover marks. For tests and throw-away
        environments; works after :meth:`close` (with a client of its own), and again."""
        client = self._new_client()
        namespace = self.options.namespace
        try:
            deleting = lambda: delete_namespace(client, namespace)  # noqa: E731
            await self._retrying(
                f"deleting namespace {namespace!r}", client, deleting, after_close=True
            )
        finally:
            await client.aclose()

    # -- housekeeping -----------------------------------------------------------------

    async def trim(self, *, older_than: float | None = None) -> int:
        """Delete entries every consumer group has acknowledged; returns how many went.

        Entries younger than ``older_than`` seconds (default: the ``retention`` option)
        are kept whatever the groups say, so ungrouped readers less than that far behind
        lose nothing (those further behind are told what they lost). Without groups,
        everything older than that goes. Runs by itself every ``trim_interval`` seconds
        while the transport is started. A partition key that holds no stream (another
        client replaced it; its readers log that) is skipped, the others are trimmed.
        """
        client = self._require_client()
        keep = self.options.retention if older_than is None else older_than
        return await trim_acknowledged(client, self._streams, keep)
