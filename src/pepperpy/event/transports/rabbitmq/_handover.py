"""The hand-over grace: a key taken over from a member that lost its connection waits.

With single active consumer the broker hands a partition to the next member the moment
the active one's connection is gone (at once for a reset; after the broker's heartbeat
timeout for a silent link), with the messages that member had not acknowledged first,
flagged ``redelivered``. Its handlers are not interrupted by the loss (a handler in
progress runs to its end, see ``Consumer``), so without a pause the new member handled
the event in progress there a second time, and the events of its key after it, while
the first handling still ran (soak audit F4: events 1 to 5 of a key started and ended
on the new member during event 0's first handling).

So a group consumer whose first delivery on a channel is a redelivery holds the keys it
did not know from before for ``handover_grace`` seconds (the keys whose first event on
the channel is a redelivery: one of them may be in a handler elsewhere), and starts the
others (their earlier events were all acknowledged, so none of them is) once it has
looked for a release mark. It cannot know whether the previous member still runs a
handler, or how long: the grace covers a handler that ends within it.

A member that hands a partition over in good order (a rebalancing, ``unsubscribe()``,
``close()``: nothing of it in progress any more, and nothing of the member before it
either) says so with a release mark, an empty queue ``<partition queue>.released``
declared before its channel closes, with ``x-expires``. The next member looks for it at
its first delivery, whatever that is, and takes it (a passive declare, then a delete)
before it starts any keyed event, so a mark never outlives the hand-over it was made
for; found, nothing is held: a graceful hand-over costs one round trip on the probe
channel, not the grace. Keys this process had itself are not held either: a lane still
running on the old channel keeps them in order, and events it received on a channel that
died, handled (their acknowledgement may have been lost with it) or never started, run
nowhere else (``Consumer._ours``). Events that were on their way when the connection
dropped, never received, cannot be told apart from another member's.

A link that goes silent (a partition, no reset) is the other way to lose a partition:
the broker hands it on once its heartbeat timeout noticed (measured: after about three
heartbeat intervals), while the connection is given up after ``2 * heartbeat``
seconds (see ``_heartbeat``), checked every half interval. Meanwhile the member would
go on starting the events it had prefetched, events the next member gets too: so a
group member starts no delivery while it has heard nothing from the broker for a
heartbeat interval (:func:`until_heard`), which a live broker never lets happen (it
sends a heartbeat every half interval). The events then wait until the link speaks
again, or come back to the group when it is given up.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..base import cancelled_by_caller
from ._config import RELEASE_MARK_EXPIRY, RELEASED

if TYPE_CHECKING:
    from aio_pika.abc import AbstractChannel

    from ._transport import RabbitMQTransport

__all__ = ["Grace", "mark_released", "until_heard"]

logger = logging.getLogger("pepperpy.event.transports.rabbitmq")


class Grace:
    """The hand-over grace of one channel of a group consumer, from its first delivery.

    ``checked`` is done once the release mark was looked for (and taken, if there was
    one); ``over`` once the redelivered keys may start: at once after a mark or when the
    first delivery was not a redelivery, else when ``seconds`` have passed since it.
    :meth:`end` (the consumer pauses, or the channel is gone) ends both at once; a look
    for the mark under way goes on to its answer (one round trip), which tells whether
    a mark can be passed on (:attr:`clear`).
    """

    __slots__ = (
        "checked",
        "over",
        "released",
        "clear",
        "queue",
        "seconds",
        "_ended",
        "_first_redelivered",
        "_logged",
        "_looked",
        "_task",
    )

    def __init__(
        self, transport: RabbitMQTransport, queue: str, seconds: float, redelivered: bool
    ) -> None:
        loop = asyncio.get_running_loop()
        self.queue = queue
        self.seconds = seconds
        self._first_redelivered = redelivered
        #: the member before left a release mark: nothing of it was in progress
        self.released = False
        #: nothing the member before had may still run: it left a mark, it had
        #: acknowledged everything (the first delivery was new), or the grace passed
        self.clear = False
        self.checked: asyncio.Future[None] = loop.create_future()
        self.over: asyncio.Future[None] = loop.create_future()
        self._looked: asyncio.Future[None] = loop.create_future()  # the look itself ended
        self._ended = False
        self._logged = False
        self._task = loop.create_task(self._run(transport, loop.time() + seconds))

    async def _run(self, transport: RabbitMQTransport, until: float) -> None:
        try:
            self.released = await transport._take_release_mark(self.queue + RELEASED)
        except asyncio.CancelledError:
            if cancelled_by_caller():
                raise
            # aiormq fails a dead connection's requests so: our channel is gone too
            logger.debug("could not look for the release mark of %s: connection lost", self.queue)
        except Exception as exc:  # the broker away: hold, as without a mark
            logger.debug("could not look for the release mark of %s: %r", self.queue, exc)
        finally:
            self.clear = self.released or not self._first_redelivered
            _done(self._looked)
            _done(self.checked)
        if self.clear or self._ended:
            _done(self.over)
            return
        await asyncio.sleep(max(0.0, until - asyncio.get_running_loop().time()))
        self.clear = True
        _done(self.over)

    def end(self) -> None:
        """Stop waiting: the consumer pauses (what waits then returns unstarted) or its
        channel is gone (what waits then finds it closed)."""
        self._ended = True
        _done(self.checked)
        _done(self.over)
        if self._looked.done():
            self._task.cancel()  # sleeping through the grace: no need any more

    async def looked(self) -> None:
        """Wait until the look for the release mark has its answer (see :attr:`settled`)."""
        if not self._looked.done():
            await asyncio.wait((self._looked,))

    async def wait(self, redelivered: bool, key: str) -> None:
        """Wait before the first event of ``key`` on this channel: the whole grace for a
        redelivered one, the check for a release mark for the others.

        A cancellation of the caller propagates; the grace goes on for the other keys.
        """
        if not self.checked.done():
            await asyncio.wait((self.checked,))
        if not redelivered or self.over.done():
            return
        if not self._logged:
            self._logged = True
            logger.info(
                "%s: took over events that another member may still be handling (its "
                "connection was lost, or it crashed); their keys wait %gs (handover_grace) "
                "before they are handled here",
                self.queue,
                self.seconds,
            )
        await asyncio.wait((self.over,))


def _done(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def mark_released(channel: AbstractChannel, queue: str) -> None:
    """Declare ``queue``'s release mark on ``channel`` (before the channel closes, so the
    broker has it before it activates the next member)."""
    underlay = await channel.get_underlay_channel()
    await underlay.queue_declare(
        queue + RELEASED, arguments={"x-expires": int(RELEASE_MARK_EXPIRY * 1000)}
    )


def _silent_for(channel: Any) -> float:
    """Seconds the aiormq connection of ``channel`` heard nothing beyond its heartbeat
    interval (0 when it heard from the broker within it, or has no heartbeats)."""
    connection = getattr(channel, "connection", None)
    heartbeat = getattr(connection, "heartbeat_timeout", 0)
    last = getattr(connection, "_Connection__last_frame_time", None)  # aiormq's reader
    if not isinstance(heartbeat, int | float) or heartbeat <= 0 or not isinstance(last, float):
        return 0.0
    return max(0.0, asyncio.get_running_loop().time() - last - heartbeat)


async def until_heard(channel: Any, stopped: Callable[[], bool]) -> None:
    """Wait while nothing came from the broker on ``channel``'s connection for a heartbeat
    interval: the broker may have given this member up and handed its partition on.

    Returns once a frame came (the link speaks again), the channel closed (aiormq gave
    the connection up: the event goes back to the group) or ``stopped()`` (a pause). One
    attribute read per delivery while the link is healthy.
    """
    if not _silent_for(channel):
        return
    logger.debug("holding a delivery: nothing heard from RabbitMQ for a heartbeat interval")
    while _silent_for(channel) and not channel.is_closed and not stopped():  # noqa: ASYNC110
        await asyncio.sleep(0.1)  # (aiormq has no hook for a frame arriving)
