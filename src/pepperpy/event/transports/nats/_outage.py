"""What the log says while the connection to NATS is lost: why it was lost, that
reconnecting fails (once, then once a minute), and when it is back.

nats-py reports each failed reconnect attempt as an error of its own, a bare
``TimeoutError`` among them: logged as they came, an outage was one warning per attempt,
some of them with no reason at all. An :class:`Outages` per transport turns a client's
reports into a warning when the connection is lost, one when reconnecting keeps failing
and an info when it is back.

Also why ``start()`` could not connect: the last attempt's error, or that the server
there did not answer the NATS handshake (something else listens on that port).
"""

from __future__ import annotations

import logging
import time
import traceback
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..._bus_logging import log_fields
from ..base import CREDENTIALS_REFUSED, TLS_REFUSED, UNREACHABLE
from ._client import TlsNotOffered, drop_attempt

if TYPE_CHECKING:
    from nats.aio.client import Client

    from ._options import NatsOptions

__all__ = [
    "REFUSED_BACKOFF_MAX",
    "STILL_DOWN_EVERY",
    "Outage",
    "Outages",
    "attempted",
    "describe",
    "handshake_failure",
    "not_connected",
    "refused_credentials",
    "refused_tls",
]

logger = logging.getLogger("pepperpy.event.transports.nats")

#: while reconnecting fails, a warning this often (seconds); each attempt is debug
STILL_DOWN_EVERY = 60.0
#: the longest pause (seconds) between two reconnection attempts the server refuses
REFUSED_BACKOFF_MAX = 15.0
#: what the server's ``-ERR`` says when it refuses a client's credentials (lower case)
_REFUSALS = ("authorization violation", "authentication expired", "authentication revoked")


@dataclass
class Outage:
    """A connection lost and not back yet: since when, and the attempts that failed."""

    since: float
    failures: int = 0
    #: when the last warning about it was logged
    warned: float | None = None
    #: whether the server refused the credentials of an attempt (logged once, an ERROR)
    refused: bool = False
    #: whether an attempt's TLS handshake failed for good (logged once, an ERROR)
    tls_refused: bool = False
    #: why it goes on, from the latest failure (``Transport.outage_reason``)
    reason: tuple[str, str] = (UNREACHABLE, "the connection to NATS was lost")


def refused_credentials(exc: BaseException) -> bool:
    """Whether ``exc`` is the server refusing the client's credentials (user and
    password, token, or an expired or revoked one): nats-py raises a bare
    ``nats: 'Authorization Violation'`` error for it while connecting."""
    from nats.errors import AuthorizationError
    from nats.errors import Error as NatsError

    if isinstance(exc, AuthorizationError):
        return True
    return isinstance(exc, NatsError) and any(words in str(exc).lower() for words in _REFUSALS)


def refused_tls(exc: BaseException) -> str | None:
    """What a TLS handshake that fails for good says, as a sentence; None for any other
    error (a reset or a timeout mid-handshake may not happen again).

    For good: the client refuses the server's certificate (not signed by a CA it
    trusts, expired, or for another host name than the URL's), the server ends the
    handshake with an alert (it wants a client certificate, say), or a ``tls://``
    server does not use TLS at all (see :func:`~._client.new_client`).
    """
    import ssl

    if isinstance(exc, TlsNotOffered):
        return str(exc)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            f"the TLS handshake failed: the client refuses the server's certificate ({exc}); "
            "it must be signed by a CA the client trusts (give that CA's file as tls_ca; "
            "without it, the system's CAs: SSL_CERT_FILE or SSL_CERT_DIR name others) and "
            "name the host of the URL (or tls_hostname)"
        )
    if isinstance(exc, ssl.SSLError) and "ALERT" in str(exc.reason or "").upper():
        return (
            f"the TLS handshake failed: the server refused it ({exc}); it may require a "
            "client certificate (give its files as tls_cert and tls_key) it did not get or "
            "does not accept, or a TLS version this client does not offer"
        )
    return None


def describe(exc: BaseException) -> str:
    """The error's text, or what it means when it has none (a bare ``TimeoutError``)."""
    text = str(exc)
    if text:
        return text
    if isinstance(exc, TimeoutError):
        return "the server did not answer in time"
    return type(exc).__name__


def handshake_failure(exc: BaseException, server: str | None, waited: float) -> str | None:
    """What to say of an attempt whose TCP connection was accepted but which got no
    NATS greeting (the ``INFO`` line a NATS server sends first); None for other errors.

    ``exc`` is the error of an attempt to connect to ``server`` (``host:port``, see
    :func:`attempted`), or the ``TimeoutError`` of a deadline that cut the
    attempt short (its cause, the cancellation, shows where the attempt was); the
    attempt waited ``waited`` seconds for the greeting. A server of another protocol on
    the port (Redis, a web server) either says nothing, so the wait times out, or sends
    something else (nats-py: "empty response from server when expecting INFO message").
    nats-py's wait for the TCP connection raises the same bare ``TimeoutError``: only the
    traceback tells the two apart.
    """
    from nats.errors import Error as NatsError

    if isinstance(exc, NatsError) and "expecting INFO" in str(exc):
        heard = "it closed the connection or sent something other than an INFO line"
    elif isinstance(exc, TimeoutError) and any(
        frame.f_code.co_name == "_process_connect_init"
        for error in (exc, exc.__cause__)
        if error is not None
        for frame, _ in traceback.walk_tb(error.__traceback__)
    ):
        heard = f"it accepted the connection but sent nothing within {waited}s"
    else:
        return None
    where = f" at {server}" if server else ""
    return f"the server{where} did not answer the NATS handshake ({heard}); is it a NATS server?"


def attempted(nc: Client) -> str | None:
    """``host:port`` of the server ``nc`` connects to (or last connected to), if known."""
    uri = getattr(getattr(nc, "_current_server", None), "uri", None)  # nats-py's Srv
    return f"{uri.hostname}:{uri.port}" if uri is not None and uri.hostname else None


def not_connected(
    nc: Client,
    last: tuple[Exception, str | None] | None,
    gave_up: BaseException,
    connect_timeout: float,
) -> str:
    """Why ``start()`` could not connect within ``connect_timeout``: the ``last``
    failed attempt's error and server, or how its one attempt was cut short
    (``gave_up``, the deadline's ``TimeoutError``)."""
    if last is None:  # the one attempt lasted until the deadline
        return handshake_failure(gave_up, attempted(nc), connect_timeout) or "no answer"
    error, server = last
    waited = nc.options["connect_timeout"]  # each attempt's, as nats-py was given it
    return handshake_failure(error, server, waited) or str(error) or "no answer"


class Outages:
    """The state of the transport's current client, as far as logging it goes.

    The transport passes on the reports of its current client only (not those of a
    client it is closing, nor of a ``start()`` that raises anyway), and calls
    :meth:`forget` when it replaces the client.
    """

    def __init__(self, server: str, options: NatsOptions) -> None:
        #: the server URL(s), without passwords
        self.server = server
        self.options = options
        #: the client's reconnecting, since it was disconnected until it is back
        self.outage: Outage | None = None
        #: the error that came with a connection being lost, for its warning
        self.cause: str | None = None
        #: the longest pause between two refused attempts: never below the usual one
        #: (``reconnect_wait`` takes up to 300 s; 15 s made a refused attempt come
        #: sooner than an unreachable server's)
        self.longest = max(REFUSED_BACKOFF_MAX, options.reconnect_wait)

    def down_for(self) -> float | None:
        """Seconds since the connection was lost; None while it is up."""
        outage = self.outage
        return None if outage is None else time.monotonic() - outage.since

    def reason(self) -> tuple[str, str] | None:
        """Why the connection is not back (the latest failure); None while it is up."""
        outage = self.outage
        return None if outage is None else outage.reason

    def error(self, nc: Client, exc: Exception) -> None:
        """What nats-py reports: a lost connection, a failed attempt, a server error.

        One warning says the connection was lost and why (:meth:`disconnected`), one
        that reconnecting fails and why, then one a minute while it still fails; each
        attempt is logged at debug level. Errors on a working connection (a permission
        the server refused, say) are warnings.
        """
        from nats.errors import StaleConnectionError

        reason = describe(exc)
        outage = self.outage
        if outage is None:
            if nc.is_connected and not isinstance(exc, OSError | StaleConnectionError):
                logger.warning("NATS connection error at %s: %s", self.server, reason)
                return
            # the connection is being lost: disconnected() says so, with this reason
            self.cause = reason
            logger.debug("NATS connection to %s lost: %s", self.server, reason)
            return
        outage.failures += 1
        drop_attempt(nc)
        if refused_credentials(exc):
            outage.reason = (
                CREDENTIALS_REFUSED,
                f"NATS at {self.server} refuses the transport's credentials ({reason})",
            )
            self._refused(nc, outage, reason)
            return
        tls = refused_tls(exc)
        if tls is not None:
            outage.reason = (TLS_REFUSED, f"cannot reconnect to NATS at {self.server}: {tls}")
            self._tls_refused(nc, outage, tls)
            return
        outage.reason = (UNREACHABLE, f"cannot reconnect to NATS at {self.server} ({reason})")
        now = time.monotonic()
        if outage.warned is not None and now - outage.warned < STILL_DOWN_EVERY:
            logger.debug("cannot reconnect to NATS at %s yet: %s", self.server, reason)
            return
        outage.warned = now
        logger.warning(
            "cannot reconnect to NATS at %s yet (%s); %d attempt(s) failed in %.0fs, "
            "retrying every %ss",
            self.server,
            reason,
            outage.failures,
            now - outage.since,
            self.options.reconnect_wait,
            extra=log_fields(
                "outage_ongoing",
                transport=self.server,
                reason=reason,
                outage_s=round(now - outage.since, 1),
                failed_attempts=outage.failures,
            ),
        )

    def _refused(self, nc: Client, outage: Outage, reason: str) -> None:
        """The server refused an attempt's credentials (a password changed under a running
        service): an ERROR the first time in an outage, and the attempts back off,
        doubling up to :attr:`longest` (nats-py reads the pause before each)."""
        self._back_off(nc)
        if outage.refused:
            logger.debug("NATS at %s refused the credentials again: %s", self.server, reason)
            return
        outage.refused = True
        logger.error(
            "NATS at %s refuses the transport's credentials (%s): check the user and "
            "password (or token) in its URL; the transport keeps trying, backing off up "
            "to %gs. Further refusals are logged at DEBUG",
            self.server,
            reason,
            self.longest,
            extra=log_fields("outage", transport=self.server, reason=reason),
        )

    def _tls_refused(self, nc: Client, outage: Outage, why: str) -> None:
        """A reconnection's TLS handshake failed for good (the server came back with a
        certificate the client refuses, say): an ERROR the first time in an outage, and
        the attempts back off as for refused credentials; each one trying again every
        ``reconnect_wait`` would not fix it."""
        self._back_off(nc)
        if outage.tls_refused:
            logger.debug("NATS at %s: %s", self.server, why)
            return
        outage.tls_refused = True
        logger.error(
            "cannot reconnect to NATS at %s: %s; the transport keeps trying, backing off "
            "up to %gs. Further failures are logged at DEBUG",
            self.server,
            why,
            self.longest,
            extra=log_fields("outage", transport=self.server, reason=why),
        )

    def _back_off(self, nc: Client) -> None:
        """Double the pause before nats-py's next attempt, from ``reconnect_wait`` up to
        :attr:`longest`: :data:`REFUSED_BACKOFF_MAX`, or ``reconnect_wait`` when that is
        longer, so a refused attempt never comes sooner than any other (nats-py reads
        the pause before each attempt)."""
        wait = nc.options.get("reconnect_time_wait")
        if isinstance(wait, int | float):
            nc.options["reconnect_time_wait"] = min(
                max(wait * 2, self.options.reconnect_wait), self.longest
            )

    def disconnected(self, nc: Client) -> None:
        """``nc`` lost its connection and reconnects: a warning saying why."""
        cause, self.cause = self.cause, None
        unanswered = getattr(nc, "_pings_outstanding", 0)  # nats-py's count; reset on PONG
        if unanswered > self.options.max_outstanding_pings:
            cause = (
                f"{unanswered - 1} pings in a row went unanswered (ping_interval="
                f"{self.options.ping_interval}s): the connection went silent"
            )
        self.outage = Outage(
            time.monotonic(),
            reason=(
                UNREACHABLE,
                f"disconnected from NATS at {self.server} ({cause or 'connection lost'})",
            ),
        )
        logger.warning(
            "disconnected from NATS at %s (%s); reconnecting",
            self.server,
            cause or "connection lost",
            extra=log_fields("outage", transport=self.server, reason=cause or "connection lost"),
        )

    def reconnected(self, nc: Client | None = None) -> None:
        """The client is connected again: an info saying after how long."""
        outage = self.outage
        self.forget()
        if nc is not None and outage is not None and (outage.refused or outage.tls_refused):
            # no backing off now
            nc.options["reconnect_time_wait"] = self.options.reconnect_wait
        if outage is None:
            logger.info(
                "reconnected to NATS at %s",
                self.server,
                extra=log_fields("outage_over", transport=self.server),
            )
        else:
            lasted = time.monotonic() - outage.since
            logger.info(
                "reconnected to NATS at %s after %.1fs (%d failed attempt(s))",
                self.server,
                lasted,
                outage.failures,
                extra=log_fields(
                    "outage_over",
                    transport=self.server,
                    outage_s=round(lasted, 1),
                    failed_attempts=outage.failures,
                ),
            )

    def forget(self) -> None:
        """Drop what was known of the client's outage (it is back, or replaced)."""
        self.outage = self.cause = None
