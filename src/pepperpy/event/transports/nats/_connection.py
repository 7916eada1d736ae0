"""The transport's NATS client: connecting one (for ``start()``, and in place of one the
server closed), what nats-py reports about it, and replacing it when the server closes
it for good.

:class:`Connection` is a part of :class:`NatsTransport`, which it is only ever used as;
the retries of a replacement and of restoring the stream and consumers after a reconnect
are in ``_recovery``, what the log says while the connection is lost in ``_outage``.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from ..._deps import require
from ..._errors import TransportError
from ..base import cancelled_by_caller, cancelling
from ._client import close_client, drop_failed_tls, new_client
from ._outage import attempted, describe, not_connected, refused_credentials, refused_tls
from ._recovery import replace_client, restore_consumers
from ._stream import ensure_stream

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.js import JetStreamContext

    from ._options import NatsOptions
    from ._outage import Outages
    from ._tls import TlsSettings
    from ._transport import NatsTransport

__all__ = ["Connection"]

logger = logging.getLogger("pepperpy.event.transports.nats")


class CredentialsRefused(Exception):
    """Raised by a connecting client's error callback, out of ``nc.connect()``, when the
    server refuses the credentials: ``start()`` fails at once instead of trying again
    until ``connect_timeout``."""


class TlsRefused(Exception):
    """Raised by a connecting client's error callback, out of ``nc.connect()``, once the
    TLS handshake failed for good with every server of the URL (see
    :func:`refused_tls`): ``start()`` fails at once, naming the cause, instead of
    trying again until ``connect_timeout`` as if the server were unreachable."""


class Connection:
    """The client of a :class:`NatsTransport`, from connecting to replacing it.

    Its state is the transport's (set by ``NatsTransport.__init__``); see there for what
    each attribute holds.
    """

    servers: list[str]
    server: str
    options: NatsOptions
    _token: str | None
    _tls: TlsSettings
    _nc: Client | None
    _restoring: asyncio.Task[None] | None
    _replaced: Client | None
    _replacing: asyncio.Task[None] | None
    _lost: str | None
    _outages: Outages
    _closed: bool
    _stream_differs: str | None
    _stream_created: datetime | None

    async def _connect(self) -> Client:
        """A new client, connected and with the stream checked, within ``connect_timeout``.

        Raises :class:`TransportError` when the server cannot be reached (or
        :class:`ConfigurationError` for a stream that does not fit this program).
        """
        require("nats", extra="nats", feature="the nats:// transport")
        from nats.errors import Error as NatsError
        from nats.errors import NoServersError

        attempts = max(1, round(self.options.connect_timeout / self.options.reconnect_wait))
        since = cancelling()  # start() may run in the cleanup of a cancelled task
        # Any: nats-py annotates float seconds as int
        nc: Any = new_client(require_tls=self._tls.required)

        #: the last failed attempt's error and server (for the error start() raises)
        failures: list[tuple[Exception, str | None]] = []
        connecting = True  # until nc.connect() returns
        #: the servers (host:port) whose TLS handshake failed for good, while connecting
        tls_refused: dict[str | None, str] = {}

        # nats-py's callbacks do not say which client calls: one set per client
        async def error(exc: Exception) -> None:
            failures[:] = [(exc, attempted(nc))]
            if connecting and refused_credentials(exc):  # no use trying again: raised
                raise CredentialsRefused(describe(exc))  # out of nc.connect()
            if connecting and (why := refused_tls(exc)) is not None:
                tls_refused[attempted(nc)] = why
                if len(tls_refused) >= len(self.servers):  # a cluster: each one refused
                    raise TlsRefused(why)  # out of nc.connect()
                # nats-py closes the attempt before trying the next server, and would
                # wait for this socket's close until the deadline: gone already
                drop_failed_tls(nc)
            await self._on_error(nc, exc)

        async def disconnected() -> None:
            await self._on_disconnected(nc)

        async def reconnected() -> None:
            await self._on_reconnected(nc)

        async def closed() -> None:
            await self._on_closed(nc)

        try:
            # nats-py bounds each attempt (its own connect_timeout) but not the whole, and
            # waits for JetStream's answers separately: one deadline for all of it
            async with asyncio.timeout(self.options.connect_timeout):
                await nc.connect(
                    self.servers,
                    name="pepperpy-event",
                    token=self._token,  # ?token=; a token@host nats-py reads itself
                    allow_reconnect=True,
                    # bounded for the first connection, so a wrong URL fails start();
                    # unbounded afterwards (set below), so a broker restart is survived
                    max_reconnect_attempts=attempts,
                    reconnect_time_wait=self.options.reconnect_wait,
                    # each attempt (TCP, then the server's INFO and PONG), never longer
                    # than the whole
                    connect_timeout=min(2.0, self.options.connect_timeout),
                    # nats-py's own default (120 s, 2 unanswered) took 4 to 6 minutes to
                    # notice a link gone silent, delivering nothing meanwhile
                    ping_interval=self.options.ping_interval,
                    max_outstanding_pings=self.options.max_outstanding_pings,
                    error_cb=error,
                    disconnected_cb=disconnected,
                    reconnected_cb=reconnected,
                    closed_cb=closed,
                    **self._tls.connect_options(),
                )
                connecting = False
                nc.options["max_reconnect_attempts"] = -1
                await self._ensure_stream(nc.jetstream())
        except BaseException as exc:
            if isinstance(exc, TlsRefused):
                drop_failed_tls(nc)
            await close_client(nc, self._deadline())
            if isinstance(exc, TlsRefused):
                raise TransportError(f"cannot connect to NATS at {self.server}: {exc}") from None
            if isinstance(exc, CredentialsRefused):
                raise TransportError(
                    f"cannot connect to NATS at {self.server}: the server refuses the "
                    f"credentials ({exc}); check the user and password (or token) in the URL"
                ) from None
            # nats-py gives up with NoServersError once its attempts (as many as fit
            # in connect_timeout) failed: that says nothing of why, the last failure does
            if isinstance(exc, TimeoutError | NoServersError):
                last = failures[0] if failures else None
                reason = not_connected(nc, last, exc, self.options.connect_timeout)
                raise TransportError(
                    f"cannot connect to NATS at {self.server} within "
                    f"{self.options.connect_timeout}s: {reason}"
                ) from exc
            if isinstance(exc, NatsError | OSError) or (
                isinstance(exc, asyncio.CancelledError) and not cancelled_by_caller(since)
            ):
                raise TransportError(
                    f"cannot connect to NATS at {self.server}: {str(exc) or repr(exc)}"
                ) from exc
            raise
        return cast("Client", nc)

    def _deadline(self) -> float:
        """``connect_timeout`` from now, in event loop time (for bounded server calls)."""
        return asyncio.get_running_loop().time() + self.options.connect_timeout

    async def _ensure_stream(self, js: JetStreamContext) -> None:
        """Create the stream, or check the one there fits (see :func:`ensure_stream`).

        A stream made with another ``retention`` or ``max_age`` keeps them: a warning
        says so (once per transport, not on every reconnect), as the program's options
        say how long events are kept and they do not apply.
        """
        differ, self._stream_created = await ensure_stream(js, self.options, self.server)
        if differ is not None and differ != self._stream_differs:
            self._stream_differs = differ
            logger.warning(
                "JetStream stream %r exists with %s; the stream's settings apply, not the "
                "transport's: give it the stream's, or delete the stream (or use another "
                "stream and prefix) to have it made with yours",
                self.options.stream,
                differ,
            )

    async def _on_error(self, nc: Client, exc: Exception) -> None:
        """What nats-py reports (logged by :meth:`Outages.error`)."""
        if self._closed or nc is not self._nc:  # closing, or connect() attempts: it raises
            logger.debug("NATS client error at %s: %s", self.server, describe(exc))
            return
        self._outages.error(nc, exc)

    async def _on_disconnected(self, nc: Client) -> None:
        # not a start() giving up, nor a client closed for good (see _replace)
        if self._closed or nc is not self._nc or nc.is_closed:
            return
        self._outages.disconnected(nc)

    async def _on_reconnected(self, nc: Client) -> None:
        if nc is not self._nc:
            return
        self._outages.reconnected(nc)
        if self._restoring is None or self._restoring.done():
            loop = asyncio.get_running_loop()
            self._restoring = loop.create_task(self._restore_consumers())

    async def _on_closed(self, nc: Client) -> None:
        self._replace(nc)

    def _replace(self, nc: Client) -> None:
        """Replace ``nc`` if the server closed it for good (once per client).

        nats-py closes its client for good, without reconnecting, when the server sends
        ``-ERR`` (a protocol line or a message over the server's limits, for one; the
        transport refuses beforehand what it knows would cause one). Left so, every later
        publish would fail and the subscriptions would stop receiving while the log said
        nothing. Instead the reason is logged once, at error level, and a new client
        connects (retrying like a reconnect); the subscriptions move to it, and publishes
        wait for it up to ``publish_timeout``, then raise :class:`TransportError` saying
        why.
        """
        if self._closed or nc is not self._nc or self._replaced is nc:
            return  # our own close(), a start() that gave up, or already under way
        self._replaced = nc
        self._lost = str(nc.last_error or "") or "no reason given"
        logger.error(
            "the NATS server at %s closed the connection for good (%s); nats-py does not "
            "reconnect after that, so the transport connects a new client",
            self.server,
            self._lost,
        )
        self._replacing = asyncio.get_running_loop().create_task(self._replace_client())

    async def _replace_client(self) -> None:
        """Connect a new client in place of the one the server closed; resubscribe."""
        await replace_client(cast("NatsTransport", self))  # the only kind there is

    def _lost_connection(self) -> str:
        """Why publishing cannot use the client now: it was closed, and by what."""
        if self._replacing is not None and not self._replacing.done():
            return f"the NATS server closed the connection ({self._lost}); reconnecting"
        return f"the NATS server closed the connection ({self._lost})"

    async def _restore_consumers(self) -> None:
        """Recreate what a restarted server lost (see :func:`restore_consumers`)."""
        await restore_consumers(cast("NatsTransport", self))
