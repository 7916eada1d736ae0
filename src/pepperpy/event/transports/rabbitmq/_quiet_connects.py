"""Failed connects: aiormq's ERROR and aio-pika's INFO per try, DEBUG while the
transport says it.

:func:`quiet_failed_connects` demotes aiormq's own ERROR to DEBUG (logger
``aiormq.connection``, unprefixed: ``error when creating transport: <AMQPConnectionError:
(111, "Connect call failed ...")>``) on each first connection ``start()`` tries while the
broker refuses: ``start()`` retries, and raises a :class:`TransportError` with that very
error if it never gets through, so the line said nothing new, once per try. The same
ERROR comes from each attempt of the robust connection to reconnect while the broker is
down (nothing listens on its port, as while it restarts), once every
``reconnect_interval``: it is demoted too while the transport logs that outage (its
WARNING said it, once), when the broker could not be reached (not a TLS failure).
:class:`QuietReconnectInfo` does the same, in the same two cases, for aio-pika's INFO
(logger ``aio_pika.robust_connection``: ``Connection to <url> closed. Reconnecting after
N seconds.``), logged as each try closes: one a second for the whole of an outage at the
default ``reconnect_interval`` (audit 3 finding 6).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import ssl
import sys
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING

from ._connect import tls_failure

if TYPE_CHECKING:
    from ._logs import Outages

__all__ = [
    "CONNECT_LOGGER",
    "ROBUST_LOGGER",
    "QuietFailedConnects",
    "QuietReconnectInfo",
    "demote",
    "quiet_failed_connects",
    "unreachable",
]

#: aiormq's logger, and the message it logs each failed TCP connect with
CONNECT_LOGGER = "aiormq.connection"
CONNECT_FAILED = "error when creating transport: %r"
#: aio-pika's logger for its robust connection's reconnection loop
ROBUST_LOGGER = "aio_pika.robust_connection"


class _Attempt:
    """A ``start()`` trying to connect; ``active`` until that try is over. ``outages``
    (weakly) is the transport's, whose outages the connection made then logs."""

    __slots__ = ("active", "outages")

    def __init__(self, outages: Outages | None) -> None:
        self.active = True
        self.outages = None if outages is None else weakref.ref(outages)

    def in_outage(self) -> bool:
        """Whether the transport of this try's connection has an outage to log now."""
        outages = None if self.outages is None else self.outages()
        return outages is not None and outages.lost_at is not None and not outages.closed()


#: the try under way in this context. aiormq logs from tasks the connection starts, and a
#: task starts with a copy of its creator's context: they see the try that made them, and
#: its ``active`` turns False once the try is over (the connection's reconnection task,
#: made then, lives on)
_attempt: contextvars.ContextVar[_Attempt | None] = contextvars.ContextVar(
    "pepperpy_rabbitmq_connect_attempt", default=None
)


class QuietFailedConnects(logging.Filter):
    """Demotes aiormq's ERROR ``error when creating transport`` to DEBUG when it comes
    from a first connection ``start()`` is trying, or from the reconnection of such a
    connection, made by a transport, while the transport logs its outage and the broker
    cannot be reached (see :func:`quiet_failed_connects`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        attempt = _attempt.get()
        if record.msg != CONNECT_FAILED or attempt is None:
            return True
        if attempt.active:
            note = "start() retries, or raises it"
        elif (
            isinstance(record.args, tuple)
            and record.args
            and _refused_socket(record.args[0])
            and attempt.in_outage()
        ):
            note = "the transport logged this outage, and logs when the connection is back"
        elif (
            isinstance(record.args, tuple)
            and record.args
            and isinstance(record.args[0], BaseException)
            and tls_failure(record.args[0]) is not None
            and attempt.in_outage()
        ):  # for good: the transport logs it as an ERROR, once an outage (see _refusals)
            note = "the transport logs the failed TLS handshake once an outage, as an ERROR"
        else:
            return True
        return demote(record, note)


_connect_filter: QuietFailedConnects | None = None


def _refused_socket(error: object) -> bool:
    """Whether aiormq's ``error`` (it failed to open a socket) says the broker could not
    be reached (refused, unreachable, timed out), not that TLS failed (a certificate the
    client refused: news, shown)."""
    if not unreachable(error):
        return False
    cause = getattr(error, "__cause__", None)
    return not isinstance(error, ssl.SSLError) and not isinstance(cause, ssl.SSLError)


#: aio-pika's INFO (on ROBUST_LOGGER) each time a connection of its closes, every failed
#: attempt to restore it included: one every ``reconnect_interval`` while the broker is away
CLOSED_RECONNECTING = "Connection to %s closed. Reconnecting after %r seconds."


class QuietReconnectInfo(logging.Filter):
    """Demotes aio-pika's INFO ``Connection to <url> closed. Reconnecting after N seconds.``
    to DEBUG for a connection ``start()`` is trying (start() retries, or raises the error
    itself), and for the reconnection of such a connection while its transport logs the
    outage (its WARNING said it, its INFO says when it is over); see
    :func:`quiet_failed_connects`. Other connections' records, and this one's outside an
    outage the transport logs (a closed transport, say), stay INFO."""

    def filter(self, record: logging.LogRecord) -> bool:
        attempt = _attempt.get()
        if record.msg != CLOSED_RECONNECTING or attempt is None:
            return True
        if attempt.active:
            return demote(record, "start() retries, or raises the error")
        if attempt.in_outage():
            return demote(
                record, "the transport logged this outage, and logs when the connection is back"
            )
        return True


def demote(record: logging.LogRecord, note: str) -> bool:
    """Make ``record`` a DEBUG record ending in ``(note)``; False (drop it) when its
    logger does not log DEBUG records (the handlers would show it at its old level)."""
    if not logging.getLogger(record.name).isEnabledFor(logging.DEBUG):
        return False
    record.msg, record.args = f"{record.getMessage()} ({note})", ()
    record.levelno, record.levelname = logging.DEBUG, logging.getLevelName(logging.DEBUG)
    return True


_info_filter: QuietReconnectInfo | None = None


@contextlib.contextmanager
def quiet_failed_connects(outages: Outages | None = None) -> Iterator[None]:
    """Within it, aiormq's ERROR for a connection that could not be made is DEBUG, and so
    is aio-pika's INFO per closed try (:class:`QuietReconnectInfo`): the caller
    (``start()``) retries or raises the error itself. The connection made within
    it reconnects (by itself, later) in a task made within it too: its ERRORs for a
    broker it cannot reach are DEBUG while ``outages`` has an outage to log, whose
    WARNING says so once (and so is aio-pika's INFO per failed attempt). Connections
    made elsewhere, and this one's reconnections
    outside an outage of ``outages`` (or failing otherwise: TLS), log as before."""
    global _connect_filter, _info_filter
    if _connect_filter is None:
        _connect_filter = QuietFailedConnects()
        logging.getLogger(CONNECT_LOGGER).addFilter(_connect_filter)
    if _info_filter is None:
        _info_filter = QuietReconnectInfo()
        logging.getLogger(ROBUST_LOGGER).addFilter(_info_filter)
    attempt = _Attempt(outages)
    token = _attempt.set(attempt)
    try:
        yield
    finally:
        attempt.active = False
        _attempt.reset(token)


def unreachable(error: object) -> bool:
    """Whether a reconnection attempt failed with ``error`` because the broker could not
    be reached or dropped the connection before it answered; not when it answered no
    (bad credentials, a refused virtual host, a forced close) or when restoring the
    channels failed (a queue not found, say)."""
    if not isinstance(error, OSError):  # TimeoutError and aiormq's connection errors are
        return False
    errors = sys.modules.get("aiormq.exceptions")
    if errors is None:  # pragma: no cover - aio-pika imports aiormq
        return True
    refusals = (errors.AuthenticationError, errors.ProbableAuthenticationError)
    return not isinstance(error, (*refusals, errors.ConnectionClosed))
