"""What a lost connection logs: one warning and one info of ours, not an ERROR per channel.

When the connection drops, aio-pika's robust channels each try to reopen at once, on a
connection that is gone; each attempt fails, and aio-pika logs the failure as an ERROR
(logger ``aio_pika.tools``: ``Callback <OneShotCallback: cb=<bound method
RobustChannel._on_close ...>> error: RuntimeError: ... closed`` or ``...
ChannelInvalidStateError: No active transport in channel``). Nothing is wrong: the
robust connection reopens every channel once it has reconnected. A bus with a group has
a channel per partition, so every network blip logged a dozen or more ERRORs.

:class:`QuietChannelReopens` demotes exactly those records to DEBUG: the failed reopen of
a robust channel of one of the transport's connections, logged while that connection is
away. Such a record about another connection, or logged while ours is up (the broker
closed a channel and reopening it failed: a real error), is left as it is. What the
transport logs instead (:class:`Outages`, logger ``pepperpy.event.transports.rabbitmq``):
a WARNING when the connection is lost, an INFO when it is back, once per outage whatever
the retries.

:func:`quiet_failed_connects` does the same for aiormq's own ERROR (logger
``aiormq.connection``, unprefixed: ``error when creating transport: <AMQPConnectionError:
(111, "Connect call failed ...")>``) on each first connection ``start()`` tries while the
broker refuses: ``start()`` retries, and raises a :class:`TransportError` with that very
error if it never gets through, so the line said nothing new, once per try.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import time
import weakref
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from ..._redact import redact_url
from ._connect import lost_reason

if TYPE_CHECKING:
    from aio_pika.abc import AbstractRobustConnection

__all__ = [
    "Outages",
    "QuietChannelReopens",
    "QuietFailedConnects",
    "quiet_channel_reopens",
    "quiet_failed_connects",
]

logger = logging.getLogger("pepperpy.event.transports.rabbitmq")

#: aio-pika's logger for callbacks that failed, and the message it logs them with
CALLBACK_LOGGER = "aio_pika.tools"
CALLBACK_FAILED = "Callback %r error: %s: %s"
#: the robust channel's close callback, which reopens the channel
_REOPENING = "RobustChannel._on_close"


class QuietChannelReopens(logging.Filter):
    """Demotes aio-pika's ERROR about a robust channel failing to reopen on a connection
    of ours that is away (the robust connection restores it) to DEBUG."""

    def __init__(self) -> None:
        super().__init__()
        self.connections: weakref.WeakSet[AbstractRobustConnection] = weakref.WeakSet()

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if not isinstance(args, tuple) or not args or not self._reopening_while_away(args[0]):
            return True
        # rendered now: aio-pika deletes the callback once it ran, so a record rendered
        # later (a queue handler's, caplog's) could no longer show it
        text = record.getMessage()
        if record.levelno < logging.ERROR:  # aio-pika's DEBUG record with the traceback
            record.msg, record.args = text, ()
            return True
        if record.msg != CALLBACK_FAILED:
            return True
        if not logging.getLogger(record.name).isEnabledFor(logging.DEBUG):
            return False
        record.msg, record.args = f"{text} (its connection is away; it reopens with it)", ()
        record.levelno, record.levelname = logging.DEBUG, logging.getLevelName(logging.DEBUG)
        return True

    def _reopening_while_away(self, callback: object) -> bool:
        """True for a OneShotCallback reopening a robust channel of one of our
        connections, while that connection is away."""
        bound = getattr(callback, "callback", None)
        function = getattr(bound, "__func__", None)
        if getattr(function, "__qualname__", None) != _REOPENING:
            return False
        connection = getattr(getattr(bound, "__self__", None), "_connection", None)
        return (
            connection is not None
            and connection in self.connections
            and not connection.connected.is_set()
        )


_filter: QuietChannelReopens | None = None


def quiet_channel_reopens(connection: AbstractRobustConnection) -> None:
    """Demote the per-channel reopen ERRORs of ``connection`` while it is away (see the
    module's docstring). The filter goes on aio-pika's logger once per process and
    forgets a connection when it is collected."""
    global _filter
    if _filter is None:
        _filter = QuietChannelReopens()
        logging.getLogger(CALLBACK_LOGGER).addFilter(_filter)
    _filter.connections.add(connection)


#: aiormq's logger, and the message it logs each failed TCP connect with
CONNECT_LOGGER = "aiormq.connection"
CONNECT_FAILED = "error when creating transport: %r"


class _Attempt:
    """A ``start()`` trying to connect; ``active`` until that try is over."""

    __slots__ = ("active",)

    def __init__(self) -> None:
        self.active = True


#: the try under way in this context. aiormq logs from tasks the connection starts, and a
#: task starts with a copy of its creator's context: they see the try that made them, and
#: its ``active`` turns False once the try is over (the connection's reconnection task,
#: made then, lives on)
_attempt: contextvars.ContextVar[_Attempt | None] = contextvars.ContextVar(
    "pepperpy_rabbitmq_connect_attempt", default=None
)


class QuietFailedConnects(logging.Filter):
    """Demotes aiormq's ERROR ``error when creating transport`` to DEBUG when it comes
    from a first connection ``start()`` is trying (see :func:`quiet_failed_connects`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        attempt = _attempt.get()
        if record.msg != CONNECT_FAILED or attempt is None or not attempt.active:
            return True
        if not logging.getLogger(record.name).isEnabledFor(logging.DEBUG):
            return False
        text = record.getMessage()
        record.msg, record.args = f"{text} (start() retries, or raises it)", ()
        record.levelno, record.levelname = logging.DEBUG, logging.getLevelName(logging.DEBUG)
        return True


_connect_filter: QuietFailedConnects | None = None


@contextlib.contextmanager
def quiet_failed_connects() -> Iterator[None]:
    """Within it, aiormq's ERROR for a connection that could not be made is DEBUG: the
    caller (``start()``) retries or raises the error itself. Connections made elsewhere,
    and this one's reconnections after the block, log as before."""
    global _connect_filter
    if _connect_filter is None:
        _connect_filter = QuietFailedConnects()
        logging.getLogger(CONNECT_LOGGER).addFilter(_connect_filter)
    attempt = _Attempt()
    token = _attempt.set(attempt)
    try:
        yield
    finally:
        attempt.active = False
        _attempt.reset(token)


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

    def watch(self, connection: AbstractRobustConnection) -> None:
        """Log the outages of ``connection``; demote aio-pika's ERROR per channel meanwhile
        to DEBUG (see :func:`quiet_channel_reopens`)."""
        outages = weakref.ref(self)  # the connection's callbacks must not keep us alive

        def lost(sender: object, exc: BaseException | None = None) -> None:
            me = outages()
            if me is not None:  # sender: the robust connection, with the lost one in it
                me.lost(lost_reason(sender, exc))

        def restored(_: object) -> None:
            me = outages()
            if me is not None:
                me.restored()

        connection.close_callbacks.add(lost)
        connection.reconnect_callbacks.add(restored)
        quiet_channel_reopens(connection)

    def lost(self, reason: str) -> None:
        """The connection dropped, or an attempt to restore it failed (logged once)."""
        if self._closed() or self.lost_at is not None:
            return
        self.lost_at = time.monotonic()
        logger.warning(
            "lost the connection to RabbitMQ at %s (%s); reconnecting every %gs",
            redact_url(self.url),
            reason,
            self.reconnect_interval,
        )

    def restored(self) -> None:
        """The robust connection is back, with every channel, queue and consumer."""
        lost, self.lost_at = self.lost_at, None
        if self._closed():
            return
        downtime = f" after {time.monotonic() - lost:.1f}s" if lost is not None else ""
        logger.info("the connection to RabbitMQ at %s is back%s", redact_url(self.url), downtime)
