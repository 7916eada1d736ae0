"""The :class:`RedisTransport`: publish with ``XADD``, consume with consumer groups.

This module holds the transport's options, clients, lifecycle (start, close, abandon)
and subscriptions; publishing and dead letters come from the mixin in
:mod:`._publishing`, bounded attempts against Redis from the one in :mod:`._retrying`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..._deps import require
from ..._errors import ClosedError, ConfigurationError, TransportError
from ..._redact import redact_url
from ..._seconds import check_seconds
from .._url_options import checked_keywords, default, given_keywords
from ..base import Subscription, Transport, shutdown_sockets
from ._appends import Appends
from ._config import CLIENT_DEFAULTS, RedisOptions, client_options, parse_url
from ._dedupe import Lookout, identify
from ._group import GroupMember
from ._leases import delete_group
from ._listener import Listener
from ._outage import Outages, server_of
from ._publishing import RedisPublishing
from ._replicas import Replicas
from ._topology import connect, delete_namespace
from ._trimming import trim_acknowledged, trim_periodically
from ._wire import connection_errors, logger, pool_errors, refusals

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["RedisTransport"]

_FEATURE = "the Redis transport"


class RedisTransport(RedisPublishing, Transport):
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
        self._pauses: dict[asyncio.Future[None], Callable[[], bool]] = {}

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
        self._wake_pauses()  # of the attempts stopped now: none is made after them
        stopped = False
        try:
            await self._stop_consuming()
            stopped = True
            self._publishes_refused = True
            self._wake_pauses()
            await self._publishes_settled()
        finally:  # cancelled too: no publish starts on the client closed below
            self._publishes_refused = True
            self._wake_pauses()
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
        """Seconds since a consumer (or a publish) found Redis unreachable, or since a
        consumer of ours failed unexpectedly (see :meth:`outage_reason`); None while
        every loop that failed since has had an answer again, and every consumer runs."""
        down = self._outages.down_for()
        failure = self._consumer_failure()
        failed = None if failure is None else time.monotonic() - failure[0]
        if down is None or failed is None:
            return failed if down is None else down
        return max(down, failed)

    def outage_reason(self) -> tuple[str, str] | None:
        """Why Redis is out of reach (the latest failure): ``"credentials refused"``,
        ``"tls refused"`` (a TLS handshake that fails for good: the server's certificate
        is no longer trusted, ...) or ``"unreachable"``, with what Redis or the network
        said. Else ``"consumer
        failed"`` while a consumer of ours fails unexpectedly though Redis answers: the
        shared reader of ungrouped subscriptions ended (it is restarted), or a group
        member's lease heartbeat keeps failing. None while all is well."""
        reason = self._outages.reason()
        if reason is None:
            failure = self._consumer_failure()
            reason = None if failure is None else failure[1]
        return reason

    def _consumer_failure(self) -> tuple[float, tuple[str, str]] | None:
        """The oldest failure of a consumer that goes on: since when, and why."""
        failures = [member.failure() for member in self._members]
        if self._listener is not None:
            failures.append(self._listener.failure())
        found = [failure for failure in failures if failure is not None]
        return min(found, key=lambda failure: failure[0]) if found else None

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
                # kept until closed: cancelled meanwhile, close() closes it (waits for its
                # handlers in progress, gives its leases back) rather than forget it
                await member.close()
                if member in self._members:
                    self._members.remove(member)
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
        While Redis is unreachable it retries for ``connect_timeout`` seconds, then
        raises :class:`TransportError` (as for a command Redis refuses).
        """
        keep = self.options.retention
        if older_than is not None:
            keep = check_seconds(older_than, "older_than", zero=True, error=ValueError)
        client = self._require_client()
        removed: int = await self._retrying(
            "trimming the streams", client, lambda: self._trim_once(keep)
        )
        return removed

    async def _trim_once(self, keep: float | None = None) -> int:
        """One trim pass, raising redis-py's errors as they come (the trimming task
        reports them as an outage or a warning; :meth:`trim` retries and wraps them)."""
        client = self._require_client()
        if keep is None:
            keep = self.options.retention
        return await trim_acknowledged(client, self._streams, keep)
