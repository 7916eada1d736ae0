"""What a lost connection logs: not an ERROR per channel.

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
"""

from __future__ import annotations

import logging
import weakref
from typing import TYPE_CHECKING

from ._quiet_connects import demote

if TYPE_CHECKING:
    from aio_pika.abc import AbstractRobustConnection

__all__ = [
    "CALLBACK_FAILED",
    "CALLBACK_LOGGER",
    "QuietChannelReopens",
    "quiet_channel_reopens",
]

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
        return demote(record, "its connection is away; it reopens with it")

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
