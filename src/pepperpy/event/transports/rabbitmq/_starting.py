"""Starting the RabbitMQ transport: the first connection, tried again while the broker
cannot be reached yet (as while it starts up) until ``connect_timeout`` is up, the topic
exchange declared on it, and a connection ``start()`` does not keep closed for good.

``RabbitMQTransport.start`` (which says what the caller can expect) runs :func:`start`;
``_connect`` words why a connection failed, ``_quiet_connects`` keeps the failed tries quiet.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from ..._errors import ClosedError, ConfigurationError, TransportError
from ..._redact import redact_url
from ..base import cancelled_by_caller, cancelling, quietly
from ._connect import Handshake, connect_failure, handshake_failure, may_come_up, not_amqp
from ._heartbeat import watch_heartbeats
from ._quiet_connects import quiet_failed_connects
from ._refusals import entity_refusal

if TYPE_CHECKING:
    from aio_pika.abc import AbstractRobustConnection

    from ._transport import RabbitMQTransport

__all__ = ["discard", "first_connection", "start"]

logger = logging.getLogger("pepperpy.event.transports.rabbitmq")


async def start(transport: RabbitMQTransport) -> None:
    """Connect and declare the exchange, within ``connect_timeout`` (see
    ``RabbitMQTransport.start``)."""
    if transport._closed:
        raise ClosedError("the RabbitMQ transport is closed")
    if transport._connection is not None:
        return
    aio_pika = transport._aio_pika
    deadline = transport._deadline()
    since = cancelling()  # it may run in the cleanup of a cancelled task
    connection = await first_connection(transport, deadline, since)
    try:
        async with asyncio.timeout_at(deadline):
            channel = await connection.channel(publisher_confirms=True)
            await channel.declare_exchange(
                transport.exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
            )
    except aio_pika.exceptions.AMQPError as exc:
        await discard(transport, connection)
        refused = entity_refusal(transport.url, exc)  # by class: a 403, no permission
        raise TransportError(
            f"cannot declare topic exchange {transport.exchange_name!r}: "
            + (refused or f"{exc} (does an exchange of another type or durability have that name?)")
        ) from exc
    except (TimeoutError, OSError, asyncio.CancelledError) as exc:
        await discard(transport, connection)
        if isinstance(exc, asyncio.CancelledError) and cancelled_by_caller(since):
            raise
        raise TransportError(
            f"RabbitMQ at {redact_url(transport.url)} went away while starting: {exc!r}"
        ) from exc
    if transport._closed:  # close() ran meanwhile: it had no connection to close
        await discard(transport, connection)
        raise ClosedError("the RabbitMQ transport was closed while it started")
    transport._connection = connection
    transport._publisher = channel
    transport._outages.watch(connection)
    watch_heartbeats(connection)


async def first_connection(
    transport: RabbitMQTransport, deadline: float, since: int
) -> AbstractRobustConnection:
    """A connected robust connection, tried until ``deadline`` while the broker cannot
    be reached (see ``RabbitMQTransport.start``); ``since`` is the caller's
    :func:`cancelling`."""
    aio_pika = transport._aio_pika
    loop = asyncio.get_running_loop()
    closing = transport._closing = asyncio.Event()
    began = loop.time()
    tries = 0
    #: the last failure other than running out of time, the one worth reporting
    last: BaseException | None = None
    while True:
        tries += 1
        # what connect_robust does, with the connection in hand: its connect() starts
        # a task that goes on connecting (and reconnecting) when the caller is
        # cancelled, and only the connection can stop it and close what it opened
        try:
            connection: AbstractRobustConnection = aio_pika.RobustConnection(
                transport._driver_url,
                reconnect_interval=transport.reconnect_interval,
                client_properties={"connection_name": transport.connection_name},
            )
        except ValueError as exc:  # the URL, which __init__ checked: not expected
            raise ConfigurationError(
                f"bad RabbitMQ URL {redact_url(transport.url)}: {exc}"
            ) from None
        handshake = Handshake(connection, transport.url)  # tells a server that is not AMQP
        tried = loop.time()
        try:
            with quiet_failed_connects(transport._outages):
                # the whole of it, even with ?fail_fast=0 (aio-pika then retries
                # within connect(), which its timeout does not bound)
                async with asyncio.timeout_at(deadline):
                    await connection.connect(timeout=max(deadline - loop.time(), 0.001))
            return connection
        except (
            TimeoutError,
            OSError,
            aio_pika.exceptions.AMQPError,
            asyncio.CancelledError,
        ) as exc:
            await discard(transport, connection)
            if isinstance(exc, asyncio.CancelledError) and cancelled_by_caller(since):
                raise
            pause = min(transport.reconnect_interval, deadline - loop.time())
            if transport._closed:
                raise ClosedError("the RabbitMQ transport was closed while it started") from exc
            if not_amqp(exc, handshake, transport._aiormq):  # no use trying again
                raise TransportError(
                    handshake_failure(transport.url, exc, loop.time() - tried)
                ) from exc
            if not may_come_up(exc, transport._aiormq) or pause <= 0:
                # a try cut short by the deadline says less than the one before it
                shown = last if isinstance(exc, TimeoutError) and last else exc
                waited = (
                    f" (tried {tries} times in {loop.time() - began:.1f}s; "
                    f"connect_timeout is {transport.connect_timeout:g}s)"
                )
                raise TransportError(
                    connect_failure(transport.url, shown) + (waited if tries > 1 else "")
                ) from shown
            last = exc
            logger.debug("RabbitMQ at %s not reachable yet: %r", redact_url(transport.url), exc)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(pause):
                await closing.wait()
        if transport._closed:
            raise ClosedError("the RabbitMQ transport was closed while it started")


async def discard(transport: RabbitMQTransport, connection: AbstractRobustConnection) -> None:
    """Close a connection ``start()`` does not keep, within ``connect_timeout``.

    Its reconnection task stops and its socket, reader, writer and heartbeat go,
    even if the caller is cancelled (again) meanwhile: the close runs to its end in
    a task of its own, then that cancellation propagates.
    """
    closing = asyncio.ensure_future(
        quietly(connection.close(), "closing", logger, deadline=transport._deadline())
    )
    interrupted: asyncio.CancelledError | None = None
    while not closing.done():
        try:
            await asyncio.wait((closing,))
        except asyncio.CancelledError as exc:
            interrupted = exc
    if interrupted is not None:
        raise interrupted
