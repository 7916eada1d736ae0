"""Getting a bus going again after the server dropped it: a new client in place of one
the server closed for good (see :meth:`NatsTransport._replace`), and the stream and the
consumers back after a reconnect, for a server that lost them.

Both run as background tasks of the transport (its ``_replacing`` and ``_restoring``)
and retry until they succeed or the transport closes; a stream that does not fit this
program (:class:`ConfigurationError`) stops them, and restoring gives up after 30 rounds.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from ..._errors import ConfigurationError, TransportError
from ..base import cancelled_by_caller, resume_cancellation
from ._client import close_client

if TYPE_CHECKING:
    from ._transport import NatsTransport

__all__ = ["RETRY_BACKOFF_MAX", "replace_client", "restore_consumers"]

logger = logging.getLogger("pepperpy.event.transports.nats")

#: the longest pause (seconds) between two rounds of either, unless ``reconnect_wait``
#: is longer: the pause doubles from ``reconnect_wait`` up to the longer of the two
RETRY_BACKOFF_MAX = 5.0


def _longer(delay: float, transport: NatsTransport) -> float:
    """The pause after one of ``delay``: doubled, up to :data:`RETRY_BACKOFF_MAX` or
    ``reconnect_wait`` when that is longer (5 s made the rounds after the first come
    sooner than the ``reconnect_wait`` asked for, which takes up to 300 s)."""
    wait = transport.options.reconnect_wait
    return min(delay * 2, max(RETRY_BACKOFF_MAX, wait))


async def replace_client(transport: NatsTransport) -> None:
    """Connect a new client in place of the one the server closed; resubscribe."""
    delay = transport.options.reconnect_wait
    failures = 0
    while True:
        try:
            nc = await transport._connect()
            break
        except TransportError as exc:
            resume_cancellation()  # one nats-py's connect lost: not a reason to retry
            failures += 1
            level = logging.WARNING if failures == 1 else logging.DEBUG
            logger.log(level, "cannot connect a new NATS client yet (%s); retrying", exc)
            await asyncio.sleep(delay)
            delay = _longer(delay, transport)
        except ConfigurationError as exc:
            transport._lost = (
                f"{transport._lost}; then a new client could not use the stream: {exc}"
            )
            logger.error("cannot replace the NATS connection, publishing fails: %s", exc)
            return
    if transport._closed or cancelled_by_caller():  # close() ran meanwhile, or a shutdown
        await close_client(nc, transport._deadline())
        resume_cancellation()
        return
    transport._nc, transport._js = nc, nc.jetstream()
    transport._lost = None
    transport._outages.forget()  # the closed client's outage
    logger.warning("connected a new client to NATS at %s; subscriptions resume", transport.server)
    restoring = transport._restoring  # one with the closed client: start over
    if restoring is not None and not restoring.done():
        restoring.cancel()
    transport._restoring = asyncio.get_running_loop().create_task(transport._restore_consumers())


async def restore_consumers(transport: NatsTransport) -> None:
    """Recreate what a restarted server lost: the stream, then consumers.

    A server restarted from its store keeps both; one that lost its store (or a
    stream deleted by hand) gets them back, so publishing and consuming resume.
    JetStream may need a moment after a restart, hence the retries. After a client
    was replaced, the consumers first listen through the new one.
    """
    from nats.errors import Error as NatsError

    delay = transport.options.reconnect_wait
    for _ in range(30):
        resume_cancellation()  # one a JetStream request of the last round lost
        nc, js = transport._nc, transport._js
        if transport._closed or nc is None or js is None:
            return
        try:
            await transport._ensure_stream(js)
            transport._unrestorable = None
            for consumer in list(transport._consumers.values()):
                resume_cancellation()
                await consumer.attach(nc, js)
                await consumer.restore()
            if transport._stream_missing is not None:
                logger.info(
                    "JetStream stream %s and its consumers are back; the subscriptions "
                    "receive again",
                    transport.stream,
                )
                transport._stream_missing = None
            return
        except (TimeoutError, NatsError, TransportError) as exc:
            logger.info("JetStream not ready after reconnect (%s); retrying", exc)
            await asyncio.sleep(delay)
            delay = _longer(delay, transport)
        except ConfigurationError as exc:
            logger.exception("cannot restore the JetStream stream %s", transport.stream)
            transport._unrestorable = str(exc)  # what a publish nothing answers says
            return
    logger.error("gave up restoring JetStream consumers on %s", transport.stream)
