"""A publish refused because the message is over the broker's size limit.

Every broker has one (NATS's ``max_payload``, RabbitMQ's ``max_message_size``), and a
dead letter, the event with its failure metadata, may be over it when the event was
not. A dead letter that no broker could store is dropped with a ``dead_letter_dropped``
ERROR record, by the bus (:mod:`._bus_dead_letters`) and by RabbitMQ's delivery limit
(``transports.rabbitmq._deliveries``); they tell that refusal from the others (an
outage, whose message must not be given up on) by this class.
"""

from __future__ import annotations

from ._errors import TransportError

__all__ = ["OversizeError"]


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
