"""What a lost connection logs: one WARNING and one INFO of ours (:class:`Outages`, logger
``pepperpy.event.transports.rabbitmq``), once per outage whatever the retries, and
nothing of the drivers' that repeats them.

The drivers' records are demoted to DEBUG by filters on their loggers:
``_quiet_reopens`` (aio-pika's ERROR per robust channel that fails to reopen while its
connection is away), ``_quiet_connects`` (aiormq's ERROR and aio-pika's INFO per failed
connect, while ``start()`` tries and while an outage is logged) and ``_quiet_outages``
(the drivers' WARNINGs per lost connection and per failed attempt to restore it). A
broker that refuses the reconnections is ``_refusals``'.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..._bus_logging import log_fields
from ..._redact import redact_url
from ..base import UNREACHABLE
from ._connect import lost_reason
from ._quiet_outages import quiet_outage_warnings
from ._quiet_reopens import quiet_channel_reopens
from ._refusals import Refusal, Refusals, refusal

if TYPE_CHECKING:
    from aio_pika.abc import AbstractRobustConnection

__all__ = ["Outages"]

logger = logging.getLogger("pepperpy.event.transports.rabbitmq")


class Outages:
    """One WARNING when a transport's connection is lost and one INFO when it is back,
    once per outage however many attempts to restore it fail meanwhile; nothing once
    ``closed()`` says the transport is closed."""

    def __init__(self, url: str, reconnect_interval: float, closed: Callable[[], bool]) -> None:
        self.url = url
        self.reconnect_interval = reconnect_interval
        self._closed = closed
        #: when the connection was lost (time.monotonic()); None while it is up
        self.lost_at: float | None = None
        #: the broker refusing the reconnections (see _refusals)
        self.refusals = Refusals(url, reconnect_interval)
        #: why the open outage goes on, from its latest failure (``outage_reason``)
        self.why: tuple[str, str] | None = None

    def watch(self, connection: AbstractRobustConnection) -> None:
        """Log the outages of ``connection``; demote aio-pika's ERROR per channel meanwhile
        to DEBUG (see :func:`quiet_channel_reopens`), and the drivers' WARNINGs that
        repeat ours (see :func:`quiet_outage_warnings`)."""
        outages = weakref.ref(self)  # the connection's callbacks must not keep us alive

        def lost(sender: object, exc: BaseException | None = None) -> None:
            me = outages()
            if me is not None:  # sender: the robust connection, with the lost one in it
                refused = refusal(me.url, exc)
                if refused is not None:  # an attempt to reconnect, refused
                    me.refused(refused, sender)
                else:
                    me.lost(lost_reason(sender, exc))

        def restored(sender: object) -> None:
            me = outages()
            if me is not None:
                me.restored(sender)

        connection.close_callbacks.add(lost)
        connection.reconnect_callbacks.add(restored)
        quiet_channel_reopens(connection)
        quiet_outage_warnings(connection, self)

    def closed(self) -> bool:
        """Whether the transport is closed (its outages are no longer logged)."""
        return self._closed()

    def down_for(self) -> float | None:
        """Seconds since the connection was lost; None while it is up."""
        lost = self.lost_at
        return None if lost is None else time.monotonic() - lost

    def reason(self) -> tuple[str, str] | None:
        """Why the connection is not back (the latest failure); None while it is up."""
        return None if self.lost_at is None else self.why

    def lost(self, reason: str) -> None:
        """The connection dropped, or an attempt to restore it failed (logged once)."""
        if self._closed():
            return
        shown = redact_url(self.url)
        self.why = (UNREACHABLE, f"lost the connection to RabbitMQ at {shown} ({reason})")
        if self.lost_at is not None:
            return
        self.lost_at = time.monotonic()
        logger.warning(
            "lost the connection to RabbitMQ at %s (%s); reconnecting every %gs",
            shown,
            reason,
            self.reconnect_interval,
            extra=log_fields("outage", transport=shown, reason=reason),
        )

    def refused(self, refused: Refusal, connection: object) -> None:
        """The broker refused an attempt to reconnect (an ERROR once per outage)."""
        if self._closed():
            return
        if self.lost_at is None:
            self.lost_at = time.monotonic()
        self.refusals.refused(refused, connection, redact_url(self.url))
        self.why = self.refusals.latest

    def restored(self, connection: object = None) -> None:
        """The robust connection is back, with every channel, queue and consumer."""
        lost, self.lost_at, self.why = self.lost_at, None, None
        refused = self.refusals.over(connection)
        if self._closed():
            return
        lasted = None if lost is None else time.monotonic() - lost
        downtime = f" after {lasted:.1f}s" if lasted is not None else ""
        if refused:
            downtime += f" (the broker had refused {refused} attempt(s))"
        shown = redact_url(self.url)
        logger.info(
            "the connection to RabbitMQ at %s is back%s",
            shown,
            downtime,
            extra=log_fields(
                "outage_over",
                transport=shown,
                outage_s=None if lasted is None else round(lasted, 1),
            ),
        )
