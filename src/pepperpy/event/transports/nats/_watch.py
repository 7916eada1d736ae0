"""Noticing that the bus's stream went away under a connection that stayed up.

A stream deleted by hand (``nats stream rm``, another program's ``delete_topology()``)
takes every consumer on it. A publish notices (nothing answers it) and makes both again;
a process that only consumes got no error at all: its deliver subjects went quiet, and
stayed so until its next reconnect, while ``health()`` said all was well. So while the
transport has subscriptions it asks for the stream's info every ``ping_interval``: a
stream that is not there, or was made again (by another process's publish) without this
process's consumers, sets their restoration off (``_recovery``), with one warning, and
``health()`` reports it (``"consumer failed"``) until it succeeds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from ..base import CONSUMER_FAILED, resume_cancellation

if TYPE_CHECKING:
    from ._transport import NatsTransport

__all__ = ["missing_reason", "start_restoring", "stream_missing", "watch_stream"]

logger = logging.getLogger("pepperpy.event.transports.nats")

#: how often (seconds) a stream that could not be made again is tried once more
RETRY_UNRESTORABLE = 60.0


async def watch_stream(transport: NatsTransport) -> None:
    """Every ``ping_interval``, while there are subscriptions: is the stream still the
    one their consumers are on? Runs until the transport closes; never raises."""
    while True:
        await asyncio.sleep(transport.options.ping_interval)
        resume_cancellation()  # one a request of the last round lost
        try:
            await _look(transport)
        except Exception:  # never let the watch die: a lost stream would go unnoticed
            logger.exception("checking JetStream stream %s failed", transport.stream)


async def _look(transport: NatsTransport) -> None:
    from nats.errors import Error as NatsError
    from nats.js.errors import NotFoundError

    nc, js, stream = transport._nc, transport._js, transport.stream
    if transport._closed or nc is None or js is None or not nc.is_connected:
        return
    if not transport._consumers:  # a publisher notices on its next publish
        return
    restoring = transport._restoring
    if restoring is not None and not restoring.done():
        return
    if transport._stream_missing is not None:  # restoring gave up: try again, sometimes
        if time.monotonic() < transport._stream_retry_at:
            return
        start_restoring(transport)
        return
    try:
        async with asyncio.timeout(transport.options.connect_timeout):
            info = await js.stream_info(stream)
    except NotFoundError:
        why = f"JetStream stream {stream!r} is gone (deleted, or lost by the server)"
    except (NatsError, TimeoutError) as exc:  # the connection's trouble: reported as such
        logger.debug("could not read the info of JetStream stream %s: %r", stream, exc)
        return
    else:
        known = transport._stream_created
        if known is None or info.created is None or info.created == known:
            transport._stream_created = known or info.created
            return
        why = (
            f"JetStream stream {stream!r} was deleted and made again (by another process's "
            "publish, say), without this process's consumers"
        )
    stream_missing(transport, why)
    logger.warning(
        "%s: the subscriptions of this process receive nothing; recreating the stream "
        "and their consumers",
        why,
    )
    start_restoring(transport)


def stream_missing(transport: NatsTransport, why: str) -> None:
    """Mark the stream missing (for ``health()``) until a restoration makes it again."""
    if transport._stream_missing is None:
        transport._stream_missing = (time.monotonic(), why)


def start_restoring(transport: NatsTransport) -> None:
    """Set off a restoration of the stream and the consumers, unless one runs."""
    restoring = transport._restoring
    if restoring is None or restoring.done():
        transport._stream_retry_at = time.monotonic() + RETRY_UNRESTORABLE
        loop = asyncio.get_running_loop()
        transport._restoring = loop.create_task(transport._restore_consumers())


def missing_reason(transport: NatsTransport) -> tuple[float, tuple[str, str]] | None:
    """Since when (monotonic) and why the subscriptions receive nothing because their
    stream is missing; None while it is there, as far as the transport knows."""
    missing = transport._stream_missing
    if missing is None:
        return None
    since, why = missing
    unrestorable = transport._unrestorable
    if unrestorable is not None:
        return since, (CONSUMER_FAILED, f"{why}; it cannot be made again: {unrestorable}")
    return since, (CONSUMER_FAILED, f"{why}; recreating it and the consumers")
