"""Setting subscriptions up and taking them down: a JetStream consumer of its own for
an ungrouped subscription, one for a group, shared by its members in this process; and
deleting a group's durable consumers.

The transport's ``subscribe``, ``unsubscribe`` and ``delete_group`` (which say what each
does for the caller) run these; ``_consumer`` is the consumer itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from ..._errors import ClosedError, TransportError
from ._consumer import Consumer
from ._watch import start_restoring, stream_missing

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.js import JetStreamContext

    from ..base import Subscription
    from ._transport import NatsTransport

__all__ = ["delete_group", "join", "leave"]

logger = logging.getLogger("pepperpy.event.transports.nats")


async def join(transport: NatsTransport, subscription: Subscription) -> None:
    """Deliver to ``subscription``: through its group's consumer when another member in
    this process has one, else through a new consumer, started before this returns."""
    if transport._closed:
        raise ClosedError("the NATS transport is closed")
    nc, js = transport._nc, transport._js
    if nc is None or js is None:
        raise TransportError("start() the NATS transport before subscribing")
    if not nc.is_connected:  # reconnecting, or a client the server closed being replaced
        nc, js = await _connected(transport, subscription)

    if subscription.group is not None:
        name = f"g_{subscription.name}"
        consumer = transport._consumers.get(name)
        if consumer is not None:  # another member of the group in this process
            consumer.members.append(subscription)
            return
    else:
        name = f"u_{subscription.name}_{transport._instance}"
    try:
        consumer = await _started(transport, nc, js, name, subscription)
    except StreamNotFound:  # deleted under the running bus, and not made again since
        logger.warning(
            "JetStream stream %r is gone (deleted, or lost by the server); making it "
            "again to subscribe %r",
            transport.stream,
            subscription.pattern,
        )
        try:
            await transport._ensure_stream(js)
        except TransportError as exc:
            raise TransportError(
                f"cannot subscribe {subscription.pattern!r}: stream {transport.stream!r} "
                f"is gone and could not be made again: {exc}"
            ) from exc
        restoring = transport._restoring
        if transport._consumers and (restoring is None or restoring.done()):
            # the others' consumers went with it: back first (under interest retention
            # an event stored while they are missing is dropped for them)
            stream_missing(transport, f"JetStream stream {transport.stream!r} is gone")
            start_restoring(transport)
            restoring = transport._restoring
        if restoring is not None:
            await asyncio.wait([restoring], timeout=transport.options.connect_timeout)
        try:
            consumer = await _started(transport, nc, js, name, subscription)
        except StreamNotFound as exc:  # deleted again meanwhile
            raise TransportError(
                f"cannot subscribe {subscription.pattern!r} on stream {transport.stream!r}: "
                f"{exc.__cause__}"
            ) from exc.__cause__
    transport._consumers[name] = consumer


class StreamNotFound(Exception):
    """The stream a consumer was to be made on is not there (JetStream's 10059)."""


#: JetStream's error code for a stream that does not exist
_STREAM_NOT_FOUND = 10059


async def _started(
    transport: NatsTransport,
    nc: Client,
    js: JetStreamContext,
    name: str,
    subscription: Subscription,
) -> Consumer:
    """A new consumer for ``subscription``, started; :class:`StreamNotFound` when the
    stream is not there, :class:`TransportError` for the server's other failures."""
    from nats.errors import Error as NatsError
    from nats.js.errors import NotFoundError

    consumer = Consumer(
        nc=nc,
        js=js,
        stream=transport.options.stream,
        name=name,
        group=subscription.group,
        pattern=subscription.pattern,
        prefix=transport.options.prefix,
        options=transport.options,
        dead_letter=transport._dead_letter,
        waits_changed=transport._tick_now.set,
    )
    consumer.members.append(subscription)
    try:
        await consumer.start()
    except BaseException as exc:  # cancelled too: a half-made consumer must not
        # go on receiving for a subscription nobody knows of (never unsubscribed)
        with contextlib.suppress(NatsError, TimeoutError):
            await consumer.close()
        if isinstance(exc, NotFoundError) and exc.err_code == _STREAM_NOT_FOUND:
            raise StreamNotFound from exc
        if isinstance(exc, TimeoutError | NatsError):
            raise TransportError(
                f"cannot subscribe {subscription.pattern!r} on stream {transport.stream!r}: {exc}"
            ) from exc
        raise
    return consumer


async def _connected(
    transport: NatsTransport, subscription: Subscription
) -> tuple[Client, JetStreamContext]:
    """The client and JetStream context once the connection is back (or a client the
    server closed is replaced), waiting for it at most ``connect_timeout`` seconds (as
    ``amqp://`` does); then :class:`TransportError` saying that it is down. nats-py
    would take the subscription while reconnecting, and each of its requests would time
    out in turn ("nats: timeout", after about 30 s)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + transport.options.connect_timeout
    while True:
        nc, js = transport._nc, transport._js
        if transport._closed or nc is None or js is None:
            raise ClosedError("the NATS transport is closed")
        if nc.is_connected:
            return nc, js
        if nc.is_closed:  # by the server, for good: a new client may be on its way
            transport._replace(nc)  # in case nats-py has not reported the close yet
            replacing = transport._replacing
            if replacing is None or replacing.done() or loop.time() >= deadline:
                raise TransportError(
                    f"cannot subscribe {subscription.pattern!r} now: {transport._lost_connection()}"
                )
        if loop.time() >= deadline:
            break
        await asyncio.sleep(min(0.1, max(0.0, deadline - loop.time())))
    down = transport.outage()
    since = f", down for {down:.0f}s" if down is not None else ""
    raise TransportError(
        f"cannot subscribe {subscription.pattern!r} on stream {transport.stream!r}: not "
        f"connected to NATS at {transport.server} (reconnecting{since}); waited "
        f"connect_timeout={transport.options.connect_timeout:g}s for it. Subscribe again "
        "once the connection is back"
    )


async def leave(transport: NatsTransport, subscription: Subscription) -> None:
    """Stop delivering to ``subscription``; close its consumer if it was the last member
    (see ``NatsTransport.unsubscribe``)."""
    if subscription.group is not None:
        name = f"g_{subscription.name}"
    else:
        name = f"u_{subscription.name}_{transport._instance}"
    consumer = transport._consumers.get(name)
    if consumer is None or subscription not in consumer.members:
        return
    if len(consumer.members) > 1:
        consumer.members.remove(subscription)
        return
    del transport._consumers[name]
    await consumer.close()  # delivers what it received to its last member first
    consumer.members.remove(subscription)


async def delete_group(transport: NatsTransport, subscription: Subscription) -> None:
    """Delete the group's durable consumers (see ``NatsTransport.delete_group``)."""
    js = transport._js
    if transport._closed:
        raise ClosedError("the NATS transport is closed")
    if js is None:
        raise TransportError("start() the NATS transport before deleting a group")
    from nats.errors import Error as NatsError
    from nats.js.errors import NotFoundError

    name = f"g_{subscription.name}"
    names = [name, *(f"{name}_k{i}" for i in range(transport.options.partitions))]
    deleted = 0
    for consumer in names:
        try:
            async with asyncio.timeout(transport.options.connect_timeout):
                await js.delete_consumer(transport.stream, consumer)
            deleted += 1
        except NotFoundError:
            pass
        except (NatsError, TimeoutError) as exc:
            raise TransportError(
                f"cannot delete consumer {consumer!r} of group {subscription.group!r} "
                f"on stream {transport.stream!r}: {str(exc) or repr(exc)}"
            ) from exc
    logger.info(
        "deleted group %r on %r (%d of its %d consumers existed)",
        subscription.group,
        subscription.pattern,
        deleted,
        len(names),
    )
