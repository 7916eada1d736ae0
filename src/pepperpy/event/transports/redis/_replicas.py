"""Publishing with ``replicas``: ``XADD`` and ``WAIT`` on one connection held throughout."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ..._errors import TransportError
from ..._event import Event
from ._config import RedisOptions
from ._dedupe import Lookout, Publication
from ._outcome import ON_PRIMARY, OVER_SIZE, refused

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["Replicas", "Retrying"]

#: seconds a ``WAIT`` reply may take beyond the server-side timeout it was given
_WAIT_MARGIN = 1.0

#: the transport's ``_retrying`` (what, client, operation, deadline=, error=, unknown=)
Retrying = Callable[..., Awaitable[Any]]


class Replicas:
    """The transport's replicated publishes (``replicas`` >= 1)."""

    def __init__(
        self,
        options: RedisOptions,
        socket_timeout: float,
        exceptions: Any,
        unreachable: tuple[type[BaseException], ...],
        lookout: Lookout,
    ) -> None:
        self.options = options
        self.socket_timeout = socket_timeout
        self.exceptions = exceptions
        self.unreachable = unreachable
        self.lookout = lookout

    async def publish(
        self,
        client: Redis,
        event: Event,
        publication: Publication,
        deadline: float,
        retrying: Retrying,
    ) -> None:
        """``XADD`` and ``WAIT`` for the replicas, both on one connection held throughout.

        ``WAIT`` counts the replicas that have every write made *on its own connection*:
        sent on any other pooled connection it says nothing about this event (it may
        confirm at once, for writes of others or for none). So the publish takes one
        connection of the pool, sends ``XADD`` and the first ``WAIT`` in one write (one
        round trip, as a pipeline would) and sends further ``WAIT`` slices on it until
        the replicas confirm or ``connect_timeout`` has passed; only then does the
        connection go back to the pool. Concurrent replicated publishes are not
        coalesced: each holds its own connection while it waits, as ``WAIT`` did before.

        Until ``XADD``'s reply is in, failures are the publish's (retried while Redis is
        unreachable, within ``deadline``); after it, a failure means the replicas' answer
        is unknown, and is never asked on another connection (nor a reconnected one: a
        fresh connection has written nothing, so ``WAIT`` there confirms at once).
        An ``XADD`` sent with no reply is not sent again before the transport has made
        sure it is not in Redis (:class:`~._dedupe.Lookout`); if it is, the
        replicas cannot be asked about it (its connection is gone) and the publish
        raises with ``stored=True``.
        """
        loop = asyncio.get_running_loop()
        xadd = publication.command(self.options.maxlen)
        held: list[Any] = []  # the client holding the connection, once XADD got its reply

        async def append() -> float:
            if publication.unknown and await self.lookout.already_stored(client, publication):
                error = TransportError(
                    f"{event.type!r} ({event.id}) reached Redis on a connection that was then "
                    f"lost, so its replicas could not be asked about it; {ON_PRIMARY}"
                )
                error.stored = True
                raise error
            replicated = client.client()  # one connection of the pool, kept until aclose
            try:
                await replicated.initialize()
                connection: Any = replicated.connection
                if not connection.is_connected:  # sending would connect it, unidentified
                    await connection.connect()
                until = loop.time() + self.options.connect_timeout
                commands = [xadd, self.wait_command(until)]
                packed = connection.pack_commands(commands)
                publication.sending(connection, time.monotonic())
                await connection.send_packed_command(packed, check_health=False)
                try:
                    await connection.read_response()  # XADD's; WAIT's follows
                except self.exceptions.ResponseError as exc:
                    publication.answered(appended=False)
                    if OVER_SIZE in str(exc):  # never retried: an OversizeError at once
                        raise refused(
                            event, publication.payload, exc, unknown=publication.unknown
                        ) from exc
                    raise
                publication.answered(appended=True)
            except BaseException:
                await _give_back(replicated, broken=True)
                raise
            held.append(replicated)
            return until

        try:
            async with asyncio.timeout_at(deadline):
                until = await append()
        except self.unreachable as exc:
            until = await retrying(
                f"publishing {event.type!r}",
                client,
                append,
                deadline=deadline,
                error=exc,
                unknown=lambda: publication.unknown,
            )
        except self.exceptions.RedisError as exc:
            raise refused(event, publication.payload, exc, unknown=publication.unknown) from exc
        replicated = held[0]
        broken = True
        try:
            await self.wait_for_replicas(replicated.connection, event, until)
            broken = False
        finally:
            await _give_back(replicated, broken=broken)

    def wait_command(self, until: float) -> list[Any]:
        """``WAIT`` for the replicas up to half the socket timeout, and not past ``until``.

        ``WAIT`` blocks on the server: one longer than the socket timeout would be taken
        by redis-py for a silent server, and fail the publish before ``connect_timeout``.
        """
        step = self.socket_timeout / 2
        left = min(step, until - asyncio.get_running_loop().time())
        # at least 1 ms: WAIT with a timeout of 0 waits for ever
        return ["WAIT", self.options.replicas, max(1, int(left * 1000))]

    async def wait_for_replicas(self, connection: Any, event: Event, until: float) -> None:
        """Read the ``WAIT`` sent with the ``XADD``; ask again on ``connection`` until
        the replicas confirm or ``until`` (loop time)."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout_at(until + _WAIT_MARGIN):
                while True:
                    confirmed = int(await connection.read_response())
                    if confirmed >= self.options.replicas or loop.time() >= until:
                        break
                    if not connection.is_connected:  # sending would connect a new socket
                        raise self.exceptions.ConnectionError("the connection was closed")
                    command = connection.pack_commands([self.wait_command(until)])
                    await connection.send_packed_command(command, check_health=False)
        except (*self.unreachable, self.exceptions.RedisError) as exc:
            error = TransportError(
                f"could not learn whether replicas have {event.type!r} ({event.id}): "
                f"{str(exc) or 'no answer'}; {ON_PRIMARY}"
            )
            error.stored = True
            raise error from exc
        if confirmed < self.options.replicas:
            error = TransportError(
                f"only {confirmed} of {self.options.replicas} replicas confirmed {event.type!r} "
                f"({event.id}) within {self.options.connect_timeout}s; {ON_PRIMARY}"
            )
            error.stored = True
            raise error


async def _give_back(held: Redis, *, broken: bool) -> None:
    """Return a connection taken with ``client()`` to its pool; after a failure (or a
    cancellation) mid-command, disconnect it first: a reply may still be on its way."""
    try:
        if broken and held.connection is not None:
            await held.connection.disconnect(nowait=True)
    finally:
        await held.aclose()
