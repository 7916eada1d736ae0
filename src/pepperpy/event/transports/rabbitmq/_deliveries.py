"""The delivery limit: counting a message's deliveries, and dead-lettering it past the limit.

Quorum queues count every return of a message to its queue as a delivery
(``x-delivery-count``), including the messages a member had prefetched but not started
when it left gracefully or handed a partition over. The transport remembers those returns
(per queue and message id, in this process), so that they do not bring a message closer
to ``max_deliveries``; a crash leaves no such record, which is what stops a poison
message.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ..._bus_logging import log_fields
from ..._deadletter import dead_letter_event, partition_key
from ..._event import Event
from ..._oversize import OversizeError, log_dead_letter_dropped
from ..._redact import redact_url
from ._config import rabbitmq_major
from ._publish import message_limit

if TYPE_CHECKING:
    from ._transport import RabbitMQTransport

__all__ = [
    "BROKER_DELIVERY_LIMIT",
    "UnstartedReturns",
    "broker_limit_warning",
    "give_up",
    "warn_broker_limit",
]

#: most (queue, message) unstarted-return counts a transport remembers
UNSTARTED_RETURNS_KEPT = 65536
#: the delivery limit RabbitMQ 4.0 and later give a quorum queue that no queue argument
#: or policy gives one (``delivery-limit``): past it the broker drops the message
BROKER_DELIVERY_LIMIT = 20

logger = logging.getLogger("pepperpy.event.transports.rabbitmq")


class UnstartedReturns:
    """(queue, message id) -> times this process returned the message to its group queue
    unstarted (a graceful leave or hand-over); the delivery limit does not count them
    (see ``Consumer._on_message``)."""

    __slots__ = ("_counts",)

    def __init__(self) -> None:
        self._counts: OrderedDict[tuple[str, str], int] = OrderedDict()

    def returned(self, queue: str, message_ids: Iterable[str]) -> None:
        """Remember messages returned to ``queue`` without having been started."""
        counts = self._counts
        for message_id in message_ids:
            key = (queue, message_id)
            counts[key] = counts.pop(key, 0) + 1
        while len(counts) > UNSTARTED_RETURNS_KEPT:
            counts.popitem(last=False)

    def free(self, queue: str, message_id: str | None) -> int:
        """How many of a message's counted deliveries were unstarted returns of ours."""
        if message_id is None or not self._counts:
            return 0
        return self._counts.get((queue, message_id), 0)

    def settled(self, queue: str, message_id: str) -> None:
        """Forget a message that was acknowledged (it will not come back)."""
        if self._counts:
            self._counts.pop((queue, message_id), None)


async def give_up(
    transport: RabbitMQTransport, event: Event, deliveries: int, group: str | None
) -> None:
    """Move a message its consumers never acknowledged to ``deadletter.<topic>``.

    ``deliveries``: the deliveries that reached a consumer before this one, the broker's
    ``x-delivery-count`` less this process's unstarted returns; not the one that
    dead-letters it, which no handler sees. That is what Redis and NATS count, so a
    message dead-lettered after ``max_deliveries`` says ``max_deliveries`` on all three.

    A dead letter over the broker's ``max_message_size`` (its metadata made an event
    that fit too large) is not sent: nothing could store it, and the message requeued
    would come back at once to fail again, for ever. It is dropped with an ERROR record
    (kind ``dead_letter_dropped``, in place of ``broker_dead_letter``), and the caller
    acknowledges it, as NATS drops such a dead letter. So is one the broker itself
    refuses as over its ``max_message_size`` (:class:`OversizeError`), which is lower
    than the transport knew (an operator lowered it, the transport's option is higher).
    Any other failure to publish it raises: the caller requeues the message.
    """
    dead = dead_letter_event(
        event,
        reason=(
            f"delivered {deliveries} times without an acknowledgement (consumer crashed or failed)"
        ),
        attempts=deliveries,
        group=group,
    )
    if dead is None:  # already a dead letter: not dead-lettered again
        _dead_lettered(transport, event, deliveries, group)
        return
    limit = await _limit(transport)
    size = len(dead.to_json())
    if limit is not None and size > limit[0]:
        _dropped(transport, event, dead, deliveries, group, size, *limit)
        return
    try:
        await transport.publish(dead, key=partition_key(dead))
    except OversizeError as refused:  # the broker's limit is lower than we knew
        _dropped(transport, event, dead, deliveries, group, size, refused.limit, refused.source)
        return
    _dead_lettered(transport, event, deliveries, group)


def _dead_lettered(
    transport: RabbitMQTransport, event: Event, deliveries: int, group: str | None
) -> None:
    """Log a message given up on (see :func:`give_up`): after its dead letter was stored,
    so that a dead letter dropped after all is not also counted as sent."""
    logger.error(
        "%s (%s) was delivered %d times without an acknowledgement; dead-lettering it",
        event.type,
        event.id,
        deliveries,
        extra=log_fields(
            "broker_dead_letter",
            event_id=event.id,
            event_type=event.type,
            group=group,
            deliveries=deliveries,
            transport=redact_url(transport.url),
        ),
    )


async def _limit(transport: RabbitMQTransport) -> tuple[int, str] | None:
    """The broker's message size limit (see ``message_limit``); None while the publisher
    channel is away (the publish then waits for it, and checks the limit itself)."""
    if transport.max_message_size is not None:
        return transport.max_message_size, "the transport's max_message_size option"
    channel = transport._publisher
    if channel is None:
        return None
    try:
        underlay = await channel.get_underlay_channel()
    except transport._aiormq.exceptions.ChannelInvalidStateError:
        return None
    return message_limit(transport, underlay)


def _dropped(
    transport: RabbitMQTransport,
    event: Event,
    dead: Event,
    deliveries: int,
    group: str | None,
    size: int,
    limit: int | None,
    source: str,
) -> None:
    """Log a dead letter that no broker would store (see :func:`give_up`); ``limit``:
    the broker's ``max_message_size``, None if unknown (the broker refused the dead
    letter without naming it), and ``source``, where it comes from."""
    log_dead_letter_dropped(
        logger,
        event,
        dead,
        deliveries=deliveries,
        group=group,
        size=size,
        limit=limit,
        limit_name="max_message_size",
        source=source,
        transport=redact_url(transport.url),
    )


def broker_limit_warning(
    server_properties: Mapping[str, Any], max_deliveries: int, url: str
) -> str | None:
    """What to warn of when the broker's own delivery limit may drop a group's message
    before ``max_deliveries`` dead-letters it: RabbitMQ 4.0 and later drop a message of a
    quorum queue returned more than :data:`BROKER_DELIVERY_LIMIT` times, unless a policy
    sets another ``delivery-limit`` (or a ``dead-letter-exchange``), and no
    ``deadletter.<topic>`` or log record of ours says so. None when the transport's
    limit comes first (``max_deliveries`` 1 to 19), or the broker has no such default
    (RabbitMQ before 4.0)."""
    major = rabbitmq_major(server_properties)
    if major is None or major < 4 or 0 < max_deliveries < BROKER_DELIVERY_LIMIT:
        return None
    ours = (
        "max_deliveries=0 turns the transport's own limit off"
        if max_deliveries == 0
        else f"max_deliveries={max_deliveries} is not below it"
    )
    return (
        f"RabbitMQ {major}.x at {redact_url(url)} drops a message of a quorum queue "
        f"returned more than {BROKER_DELIVERY_LIMIT} times (its default delivery-limit), "
        f"without a dead letter or a log record of the transport's, unless a policy sets "
        f"another delivery-limit or a dead-letter-exchange for the group queues; {ours}. "
        f"Give max_deliveries below {BROKER_DELIVERY_LIMIT}, or a policy (see "
        'docs/transport-rabbitmq.md, "The broker\'s own delivery limit")'
    )


def warn_broker_limit(transport: RabbitMQTransport, server_properties: Mapping[str, Any]) -> None:
    """Log :func:`broker_limit_warning`'s warning, once per transport (a group's queues
    are joined: see ``Group.open``)."""
    if transport._broker_limit_checked or transport.queue_type != "quorum":
        return
    transport._broker_limit_checked = True
    warning = broker_limit_warning(server_properties, transport.max_deliveries, transport.url)
    if warning is not None:
        logger.warning(warning)
