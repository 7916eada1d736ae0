"""A publish refused because the message is over the broker's size limit.

Every broker has one (NATS's ``max_payload``, RabbitMQ's ``max_message_size``), and a
dead letter, the event with its failure metadata, may be over it when the event was
not. A dead letter that no broker could store is dropped with a ``dead_letter_dropped``
ERROR record, by the bus (:mod:`._bus_dead_letters`) and by the transports' delivery
limits (RabbitMQ's ``give_up``, Redis's and NATS's ``max_deliveries``: these log it with
:func:`log_dead_letter_dropped`); they tell that refusal from the others (an outage,
whose message must not be given up on) by this class.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ._bus_logging import log_fields
from ._errors import TransportError

if TYPE_CHECKING:
    from ._event import Event

__all__ = ["OversizeError", "log_dead_letter_dropped"]


class OversizeError(TransportError):
    """A :class:`TransportError` of a message over the broker's size limit: it was not
    stored (``stored`` False, unless an attempt before the refused one may have stored
    it: ``None``), and the same message will be refused again.

    ``size``: the message's size, in bytes, as the limit counts it; ``limit``: the
    broker's limit in bytes, None when unknown; ``source``: where ``limit`` comes from.
    """

    def __init__(
        self,
        message: str,
        *,
        size: int,
        limit: int | None,
        source: str,
        stored: bool | None = False,
    ) -> None:
        super().__init__(message)
        self.stored = stored
        self.size = size
        self.limit = limit
        self.source = source


def log_dead_letter_dropped(
    logger: logging.Logger,
    event: Event,
    dead: Event,
    *,
    deliveries: int,
    group: str | None,
    size: int,
    limit: int | None,
    limit_name: str,
    source: str,
    transport: str,
) -> None:
    """Log, at ERROR with kind ``dead_letter_dropped``, that a transport's delivery limit
    gave up on ``event`` and dropped its dead letter ``dead``, which no broker of that
    limit stores: ``size`` bytes, over the broker's ``limit_name`` of ``limit`` bytes
    (None: the broker did not say), ``source`` saying where that comes from;
    ``transport``: the broker's address without passwords. The same record on every
    transport (RabbitMQ, Redis, NATS): event_id, event_type, group, deliveries, size,
    limit (when known) and transport."""
    logger.error(
        "cannot dead-letter %s (%s): its dead letter %s is %s bytes, over the broker's "
        "%s%s (%s); the event is dropped",
        event.type,
        event.id,
        dead.type,
        f"{size:,}",
        limit_name,
        "" if limit is None else f" of {limit:,} bytes",
        source,
        extra=log_fields(
            "dead_letter_dropped",
            event_id=event.id,
            event_type=event.type,
            group=group,
            deliveries=deliveries,
            size=size,
            limit=limit,
            transport=transport,
        ),
    )
