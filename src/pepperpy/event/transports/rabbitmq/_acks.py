"""Acknowledging one channel's deliveries: coalesced acks, individual nacks and rejects."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from ..base import cancelled_by_caller, quietly
from ._config import ACK_DELAY

if TYPE_CHECKING:
    from ._handover import Grace

__all__ = ["Acks", "settle"]

#: message ids an acknowledger keeps of the last messages handled on its channel
RECENTLY_HANDLED = 256

logger = logging.getLogger("pepperpy.event.transports.rabbitmq")


class Acks:
    """Acknowledges one channel's deliveries in as few frames as possible.

    Acks that complete within ``ACK_DELAY`` of each other go out together: one ``multiple`` ack
    when no earlier delivery is still unsettled, else one frame each. Each frame is a
    syscall and a broker round of work, so under load this halves the frames a consumer
    sends. Every delivered tag is tracked until settled, so a ``multiple`` ack never
    covers a message left unacknowledged on purpose.
    """

    __slots__ = ("channel", "done", "evented", "flushing", "grace", "handled", "outstanding")

    def __init__(self, channel: Any) -> None:
        self.channel = channel  # the aiormq channel the tags belong to
        self.outstanding: set[int] = set()
        self.done: list[int] = []
        self.flushing: asyncio.Task[None] | None = None
        #: a group consumer's hand-over from the member before, on this channel (see
        #: _handover)
        self.grace: Grace | None = None
        #: an event (not only pings) came on this channel: the hand-over was looked at
        self.evented = False
        #: ids of the last messages handled here: an acknowledgement has no answer, so
        #: any of them may come back if the channel dies (see Consumer._forget_channel)
        self.handled: deque[str] = deque(maxlen=RECENTLY_HANDLED)

    def ack(self, tag: int) -> None:
        self.done.append(tag)
        if self.flushing is None:
            self.flushing = asyncio.get_running_loop().create_task(self._flush())

    async def settled(self, tag: int, settling: Awaitable[None]) -> None:
        """Nack/reject ``tag`` individually, then stop tracking it."""
        await settle(settling)
        self.outstanding.discard(tag)

    async def drain(self) -> None:
        """Wait until every ack requested so far was written."""
        while self.flushing is not None:
            await asyncio.shield(self.flushing)

    async def _flush(self) -> None:
        try:
            await asyncio.sleep(ACK_DELAY)  # let the acks of a burst gather
            while self.done:
                done, self.done = sorted(self.done), []
                self.outstanding.difference_update(done)
                lowest = min(self.outstanding, default=None)
                together = done if lowest is None else [t for t in done if t < lowest]
                single = done[len(together) :]
                if together:
                    await self.channel.basic_ack(together[-1], multiple=True)
                for tag in single:
                    await self.channel.basic_ack(tag)
        except asyncio.CancelledError:
            if cancelled_by_caller():
                raise
            logger.debug("could not acknowledge: the connection was lost")
            self.done.clear()
        except Exception as exc:
            logger.debug("could not acknowledge (the channel closed): %s", exc)
            self.done.clear()
        finally:
            self.flushing = None


async def settle(acknowledgement: Awaitable[None]) -> None:
    """Ack/nack/reject; a closed channel already returned the message to its queue."""
    await quietly(acknowledgement, "settling a message", logger, deadline=None)
