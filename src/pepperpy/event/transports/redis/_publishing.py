"""How the :class:`~pepperpy.event.transports.redis.RedisTransport` publishes, as a mixin.

A publish is routed to its partition stream (:meth:`RedisPublishing.stream_for`), sent
in a pipeline shared with concurrent publishes (:mod:`._appends`), or confirmed by
replicas (:mod:`._replicas`), and retried through :mod:`._retrying` without ever storing
its event twice (:mod:`._dedupe`). Publishes under way are counted, so ``close()`` can
refuse new ones and wait for these. Events a group kept failing to deliver are moved to
``deadletter.<topic>`` from here too.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from ..._bus_logging import log_fields
from ..._deadletter import DEAD_LETTER_PREFIX, dead_letter_event, partition_key
from ..._errors import ClosedError, TransportError
from ..._event import Event
from ..._oversize import OversizeError, log_dead_letter_dropped
from ..base import check_key
from ._appends import Appends
from ._config import partition_of
from ._dedupe import Lookout, Publication
from ._outcome import OVER_SIZE, refused
from ._replicas import Replicas
from ._retrying import RedisRetrying
from ._wire import EVENT_FIELD, TOPIC_FIELD, logger

if TYPE_CHECKING:
    from redis.asyncio import Redis

#: how publishes name themselves to the outages: a success ends an outage no consumer
#: loop is still failing (on a bus that only publishes, the only way one ends)
_PUBLISHING = "publish"


class RedisPublishing(RedisRetrying):
    """Publishing and dead letters for :class:`~pepperpy.event.transports.redis.RedisTransport`."""

    _client: Redis | None
    _routes: dict[str, str]
    _streams: list[str]
    _lookout: Lookout
    _replicas: Replicas
    _appends: Appends
    _publishing: int
    _settled: asyncio.Event | None
    _disconnected: bool

    if TYPE_CHECKING:

        async def start(self) -> None: ...  # RedisTransport's

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
            try:
                await self._appends.send(client, publication, deadline)
            except self._exceptions.ResponseError as exc:
                # over proto-max-bulk-len, found on a retry: a first try that broke off
                # (Redis closes the connection on the refusal, which a publish pipelined
                # after it, or the rest of the message still being written, meets)
                if OVER_SIZE in str(exc):
                    raise refused(event, payload, exc, unknown=publication.unknown) from exc
                raise

        try:
            await self._appends.send(client, publication, deadline)
        except self._refused as exc:  # credentials refused on a new connection
            raise refused(event, payload, exc, unknown=publication.unknown) from exc
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
            raise refused(event, payload, exc, unknown=publication.unknown) from exc
        # a bus that only publishes has no consumer loop to notice Redis coming back
        self._outages.reached(_PUBLISHING)

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
        """Move an event that kept failing delivery to ``deadletter.<topic>``; once this
        returns, the caller acknowledges the entry.

        A dead letter Redis refuses as over its ``proto-max-bulk-len``
        (:class:`OversizeError`: its metadata made an event that fit too large) is
        dropped, with the ERROR record RabbitMQ's and NATS's delivery limits log for one
        (kind ``dead_letter_dropped``, in place of ``broker_dead_letter``): nothing could
        store it, and the entry left pending would be claimed, dead-lettered and refused
        again, for ever. Any other failure to publish it raises: the entry stays pending,
        and is dead-lettered again when it is next claimed.
        """
        if event.type.startswith(DEAD_LETTER_PREFIX):
            logger.error(
                "dropping dead letter %s (%s): its delivery kept failing",
                event.type,
                event.id,
                extra=self._dead_letter_fields(event, group, deliveries),
            )
            return
        dead = dead_letter_event(
            event,
            reason=f"delivered {deliveries} times without acknowledgement",
            attempts=deliveries,
            group=group,
        )
        if dead is None:
            return
        try:
            await self.publish(dead, key=partition_key(dead))
        except OversizeError as too_large:
            log_dead_letter_dropped(
                logger,
                event,
                dead,
                deliveries=deliveries,
                group=group,
                size=too_large.size,
                limit=too_large.limit,
                limit_name="proto-max-bulk-len",
                source=f"Redis answered {OVER_SIZE!r}",
                transport=self._outages.where,
            )
            return
        # logged once the dead letter is stored: a dropped one is not also counted
        logger.error(
            "event %s (%s) was delivered %d times to group %r without being acknowledged; "
            "moved it to %s",
            event.type,
            event.id,
            deliveries,
            group,
            dead.type,
            extra=self._dead_letter_fields(event, group, deliveries),
        )
