"""What ``close()`` logs when the broker does not answer: one WARNING of the transport's.

Closing a transport whose broker went silent (the sockets stay open, nothing answers: a
network partition, a broker stuck on a disk alarm), ``close()`` waits for it at most
``connect_timeout`` and then gives its calls up (closing the channels, deleting the
ungrouped queues). aiormq logged a WARNING for each call so given up, with object reprs
(logger ``aiormq.channel``: ``Closing channel <Channel: "15" at 0x...> because RPC call
<Channel.Close object at 0x...> cancelled``): 13 of them for a bus with one group
(audit 3 finding 7), and nothing said which broker did not answer, nor what that means.

:class:`QuietClosingChannels` demotes those records to DEBUG for the channels of a
transport that is closing (``close()`` cancelled their calls: the broker's silence is
what the transport's WARNING says); :func:`silent_broker` is that WARNING, naming the
broker, how long ``close()`` waited for it, and what the broker does with the messages
this process had not acknowledged. The same records about other connections, or about
a transport that is not closing, stay WARNINGs.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import TYPE_CHECKING

from ..._redact import redact_url
from ._quiet_connects import demote

if TYPE_CHECKING:
    from aio_pika.abc import AbstractRobustConnection

__all__ = ["QuietClosingChannels", "quiet_closing_channels", "silent_broker"]

logger = logging.getLogger("pepperpy.event.transports.rabbitmq")

#: aiormq's logger for channels, and the WARNINGs it logs as it closes a channel whose
#: call was cancelled (by close()'s deadline, or close() stopping a task mid-call)
CHANNEL_LOGGER = "aiormq.channel"
RPC_CANCELLED = (
    "Closing channel %r because RPC call %s cancelled",
    "Closing channel %r locally because RPC call %s cancelled before Channel.Open was sent",
)
NOTE = "the transport is closing; it logs a broker that does not answer"


class QuietClosingChannels(logging.Filter):
    """Demotes aiormq's ``Closing channel ... because RPC call ... cancelled`` to DEBUG
    for a channel of a connection whose transport is closing (see the module's
    docstring)."""

    def __init__(self) -> None:
        super().__init__()
        #: the aiormq connections of closing transports (weakly: a closed one goes)
        self.closing: weakref.WeakSet[object] = weakref.WeakSet()

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if record.msg not in RPC_CANCELLED or not isinstance(args, tuple) or not args:
            return True
        try:
            ours = getattr(args[0], "connection", None) in self.closing
        except TypeError:  # not weakly referenceable: not a connection of ours
            ours = False
        if not ours:
            return True
        return demote(record, NOTE)


_filter: QuietClosingChannels | None = None


def quiet_closing_channels(connection: AbstractRobustConnection | None) -> None:
    """From now on, the calls ``close()`` gives up on the channels of ``connection`` (a
    transport's, which is closing) log DEBUG records. The filter goes on aiormq's channel
    logger once per process and holds the connections weakly."""
    global _filter
    if _filter is None:
        _filter = QuietClosingChannels()
        logging.getLogger(CHANNEL_LOGGER).addFilter(_filter)
    underlay = getattr(getattr(connection, "transport", None), "connection", None)
    if underlay is not None:  # None: away (its channels have no calls to cancel)
        _filter.closing.add(underlay)


def silent_broker(url: str, deadline: float, connect_timeout: float) -> None:
    """Log, if the time is past ``deadline`` (loop time; it gave the broker at ``url``
    ``connect_timeout`` after the handlers), that the broker did not answer ``close()``.
    A broker that answered in time leaves no time to spare past it."""
    now = asyncio.get_running_loop().time()
    if now < deadline - 0.001:  # call_at may fire a clock resolution early
        return
    logger.warning(
        "RabbitMQ at %s did not answer while closing; gave up after %.1fs (connect_timeout"
        " is %gs). The broker returns the messages this process had not acknowledged to"
        " their queues once it notices the connection is gone (at the latest after the"
        " heartbeat timeout)",
        redact_url(url),
        now - (deadline - connect_timeout),
        connect_timeout,
    )
