"""Publishing to RabbitMQ: one confirmed message per event, once more after a reconnect."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import zlib
from typing import TYPE_CHECKING

from ..._errors import ClosedError, TransportError
from ..._event import Event
from ..._oversize import OversizeError
from ..._redact import redact_url
from ..._text import shown
from ..base import cancelled_by_caller, cancelling, quietly
from ._config import (
    CONTENT_TYPE,
    LANE_HEADER,
    LANES,
    PERSISTENT,
    broker_message_limit,
    too_long,
)

if TYPE_CHECKING:
    from aio_pika.abc import AbstractChannel
    from aiormq.abc import AbstractChannel as UnderlayChannel

    from ._transport import RabbitMQTransport

__all__ = ["UNKNOWN", "message_limit", "publish", "reconnected"]

#: what RabbitMQ says closing a channel over a message's size (``PRECONDITION_FAILED -
#: message size 134217921 is larger than configured max size 134217728``; ``than max
#: size`` and no number when the broker's is RabbitMQ's most, 512 MiB)
_OVER_SIZE = re.compile(r"message size ([0-9]+) is larger than (?:configured )?max size ([0-9]+)?")
#: what a publish error adds when the event may have been stored
UNKNOWN = (
    "whether it was stored is unknown (publishing it again may deliver it twice: "
    "the broker took each message it got as a new one)"
)


def _failed(message: str, *, sent: bool) -> TransportError:
    """A publish's :class:`TransportError`, with ``stored`` and its message saying
    whether the event may be stored: not if no attempt handed it to the driver (the
    connection was away, or came back too late), perhaps if one did and no confirm
    came (or a nack: with a message routed to several queues, some may have it)."""
    error = TransportError(f"{message}; {UNKNOWN if sent else 'it was not stored'}")
    error.stored = None if sent else False
    return error


def _oversize(
    message: str, *, sent: bool, size: int, limit: int | None, source: str
) -> OversizeError:
    """:func:`_failed` for a message over the broker's size limit, which a dead letter's
    publisher tells from the other failures (see ``_deliveries.give_up``)."""
    return OversizeError(
        f"{message}; {UNKNOWN if sent else 'it was not stored'}",
        size=size,
        limit=limit,
        source=source,
        stored=None if sent else False,
    )


logger = logging.getLogger("pepperpy.event.transports.rabbitmq")


async def publish(transport: RabbitMQTransport, event: Event, key: str | None) -> None:
    """``transport.publish``: send ``event`` to the exchange, return once the broker
    confirmed it (see :meth:`RabbitMQTransport.publish`).

    After ``start()``, the whole call (waiting for a lost connection to come back, the
    broker's confirm, the one try again after a reconnect) ends within
    ``connect_timeout``, as on Redis: a silent connection (a network partition, a
    half-open socket) is noticed by heartbeats only after ``2 * heartbeat`` seconds
    (30 with the transport's default, see ``_heartbeat``), and the confirm waited that
    long.
    """
    # a last event published in the cleanup of a cancelled task: its count of
    # cancellations stays up, so only one that comes during this call stops it
    since = cancelling()
    topic = event.type
    problem = too_long(topic, f"topic {shown(topic)}")
    if problem is not None:  # refused before anything is sent
        raise _failed(f"cannot publish {event.id}: {problem}", sent=False)
    channel = transport._publisher
    if channel is None:
        if transport._closed:  # nothing sent
            raise ClosedError("the RabbitMQ transport is closed", stored=False)
        await transport.start()
        channel = transport._publisher
        assert channel is not None
    loop = asyncio.get_running_loop()
    began = loop.time()
    deadline = began + transport.connect_timeout
    if not transport._connected():  # away: wait (at most connect_timeout) for it to return
        await reconnected(transport, channel, event, None, since, sent=False, began=began)
    lane = zlib.crc32((key if key is not None else event.id).encode()) % LANES
    properties = transport._aiormq.spec.Basic.Properties(
        content_type=CONTENT_TYPE,
        delivery_mode=PERSISTENT,
        message_id=event.id,
        headers={LANE_HEADER: lane},
    )
    body = event.to_json()
    errors = transport._aiormq.exceptions
    sent = False  # whether an attempt handed the event to aiormq (it may have gone out)
    limit: tuple[int, str] | None = None  # the last attempt's, and where it came from
    for attempt in (1, 2):
        sent_before = sent  # whether an attempt before this one may have stored it
        try:
            async with asyncio.timeout_at(deadline):
                # aio-pika's Message adds nothing we need; publish on the raw channel
                underlay = await channel.get_underlay_channel()
                limit = message_limit(transport, underlay)
                if len(body) > limit[0]:  # the broker would close the channel
                    raise _oversize(
                        f"cannot publish {topic!r} ({event.id}): its message is "
                        f"{len(body):,} bytes, over the broker's max_message_size of "
                        f"{limit[0]:,} bytes ({limit[1]})",
                        sent=sent_before,
                        size=len(body),
                        limit=limit[0],
                        source=limit[1],
                    )
                sent = True
                await underlay.basic_publish(
                    body,
                    exchange=transport.exchange_name,
                    routing_key=topic,
                    properties=properties,
                    mandatory=False,
                )
            return
        except TimeoutError as exc:
            raise _failed(
                f"RabbitMQ at {redact_url(transport.url)} did not confirm {topic!r} "
                f"({event.id}) within connect_timeout ({loop.time() - began:.1f}s): "
                f"{_silence(transport, sent)}",
                sent=sent,
            ) from exc
        except asyncio.CancelledError as exc:
            if cancelled_by_caller(since):
                raise
            # aiormq fails the confirmations of a connection that died (a heartbeat
            # timeout) with CancelledError: a lost connection, not our cancellation
            error: BaseException = exc
        except (errors.AMQPError, errors.ChannelInvalidStateError, ConnectionError) as exc:
            error = exc
        refused = _OVER_SIZE.search(str(error)) if limit is not None else None
        if refused is not None and limit is not None:  # the broker closed the channel
            # reopened for the next publish
            await quietly(channel.ready(), "reopening", logger, deadline=transport._deadline())  # type: ignore[attr-defined]
            own = refused.group(2)  # the broker's limit, which it names (3.10 and later)
            raise _oversize(
                f"RabbitMQ refused {topic!r} ({event.id}), a message of {len(body):,} bytes, "
                f"as over its max_message_size, which is less than the {limit[0]:,} bytes "
                f"the transport took it for ({limit[1]}); give the transport the broker's "
                f"max_message_size"
                + (f", {int(own):,} bytes" if own is not None else "")
                + f": {error!r}",
                # the broker closes the channel instead of routing it
                sent=sent_before,
                size=len(body),
                limit=int(own) if own is not None else None,
                source="the broker's, which it named refusing the message",
            ) from error
        if attempt == 2 or transport._closed or isinstance(error, errors.DeliveryError):
            raise _failed(
                f"RabbitMQ did not confirm {topic!r} ({event.id}): {_reason(error)}", sent=sent
            ) from error
        await reconnected(transport, channel, event, error, since, sent=sent, began=began)


def message_limit(transport: RabbitMQTransport, channel: UnderlayChannel) -> tuple[int, str]:
    """The largest message, in bytes, the broker behind ``channel`` takes, and where that
    number comes from: the transport's ``max_message_size``, or the default of the
    broker's version, which it said when the connection opened (a reconnect may reach
    another node, of another version)."""
    if transport.max_message_size is not None:
        return transport.max_message_size, "the transport's max_message_size option"
    return broker_message_limit(channel.connection.server_properties)


def _reason(error: BaseException) -> str:
    """What ``error``, met by a publish, says: aiormq fails the confirms of a connection
    that died with a bare ``CancelledError``, which says nothing by itself."""
    if isinstance(error, asyncio.CancelledError):
        return "the connection was lost before the broker confirmed it"
    return repr(error)


def _silence(transport: RabbitMQTransport, sent: bool) -> str:
    """Why a publish got no confirm in time, for its error."""
    if not sent:
        return "no channel to publish on came back"
    if not transport._connected():
        return "the connection was lost and did not come back in time"
    return (
        "the connection went silent (a network partition, a half-open connection) or the "
        "broker held the publisher back (a memory or disk alarm); the connection itself "
        "is given up only after heartbeats fail, 2 * heartbeat seconds"
    )


async def reconnected(
    transport: RabbitMQTransport,
    channel: AbstractChannel,
    event: Event,
    error: BaseException | None,
    since: int,
    *,
    sent: bool,
    began: float | None = None,
) -> None:
    """Wait for the robust connection and ``channel`` to be back, until connect_timeout
    after ``began`` (loop time; default: now).

    Raises :class:`TransportError` if they are not (aio-pika's own wait has no
    bound), or if the transport closed meanwhile. ``since``: the task's count of
    cancellations when the publish began (see ``cancelled_by_caller``); ``sent``: whether
    an attempt before handed the event to aiormq (``TransportError.stored``).
    """
    errors = transport._aiormq.exceptions
    loop = asyncio.get_running_loop()
    if began is None:
        began = loop.time()
    pause = 0.01
    try:
        async with asyncio.timeout_at(began + transport.connect_timeout):
            while True:
                await channel.ready()  # type: ignore[attr-defined]
                # right after a drop the robust channel may not know yet that its
                # connection died: wait until it has a live one again
                with contextlib.suppress(errors.ChannelInvalidStateError):
                    if not (await channel.get_underlay_channel()).is_closed:
                        break
                await asyncio.sleep(pause)
                pause = min(2 * pause, 0.2)
    except (TimeoutError, asyncio.CancelledError) as exc:
        if isinstance(exc, asyncio.CancelledError) and cancelled_by_caller(since):
            raise
        reason = f" ({_reason(error)})" if error is not None else ""
        raise _failed(
            f"RabbitMQ at {redact_url(transport.url)} unreachable while publishing {event.type!r}"
            f" ({event.id}); gave up after {loop.time() - began:.1f}s (connect_timeout "
            f"{transport.connect_timeout}s) waiting for the connection to come back{reason}"
            f"{transport._outages.refusals.note()}",
            sent=sent,
        ) from (error or exc)
    if transport._closed:
        raise ClosedError("the RabbitMQ transport is closed")
