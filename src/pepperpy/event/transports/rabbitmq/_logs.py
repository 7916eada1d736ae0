"""What a lost connection logs: one warning and one info of ours, not an ERROR per channel.

When the connection drops, aio-pika's robust channels each try to reopen at once, on a
connection that is gone; each attempt fails, and aio-pika logs the failure as an ERROR
(logger ``aio_pika.tools``: ``Callback <OneShotCallback: cb=<bound method
RobustChannel._on_close ...>> error: RuntimeError: ... closed`` or ``...
ChannelInvalidStateError: No active transport in channel``). Nothing is wrong: the
robust connection reopens every channel once it has reconnected. A bus with a group has
a channel per partition, so every network blip logged a dozen or more ERRORs.

:class:`QuietChannelReopens` demotes exactly those records to DEBUG: the failed reopen of
a robust channel of one of the transport's connections, logged while that connection is
away. Such a record about another connection, or logged while ours is up (the broker
closed a channel and reopening it failed: a real error), is left as it is. What the
transport logs instead (:class:`Outages`, logger ``pepperpy.event.transports.rabbitmq``):
a WARNING when the connection is lost, an INFO when it is back, once per outage whatever
the retries.

:func:`quiet_failed_connects` does the same for aiormq's own ERROR (logger
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

:class:`QuietOutageWarnings` does it for the WARNINGs the drivers add to the transport's
own per lost connection, which repeat it: aiormq's as it gives the connection up
(logger ``aiormq.connection``: ``Cancelling cause reader exited abnormally``, with the
network error, or ``Server connection <...> was stuck. No frames were received in N
seconds.``), and aio-pika's for each failed attempt to restore it (logger
``aio_pika.robust_connection``: ``Connection attempt to "<url>" failed: <error>.
Reconnecting after N seconds.``, or ``... cancelled. ...``, one every
``reconnect_interval`` while the broker stays away). Only about one of the transport's
connections, and only while the transport has the outage to log: aiormq's two are
logged just before the transport's WARNING, so they are demoted unless the transport is
closed (it then logs nothing); aio-pika's only while an outage is recorded (after the
WARNING, before the INFO). What the transport's line does not say stays a WARNING:
aiormq's record of a reader that failed with anything but a network error or a close by
the broker (a malformed frame: a bug to see, with its traceback), and aio-pika's of an
attempt the broker answered with a refusal (credentials, virtual host, a forced close)
or whose restore of the channels failed (``NOT_FOUND``, say).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import ssl
import sys
import time
import weakref
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from ..._bus_logging import log_fields
from ..._redact import redact_url
from ..base import UNREACHABLE
from ._connect import lost_reason
from ._refusals import Refusal, Refusals, refusal

if TYPE_CHECKING:
    from aio_pika.abc import AbstractRobustConnection

__all__ = [
    "Outages",
    "QuietChannelReopens",
    "QuietFailedConnects",
    "QuietOutageWarnings",
    "QuietReconnectInfo",
    "quiet_channel_reopens",
    "quiet_failed_connects",
]

logger = logging.getLogger("pepperpy.event.transports.rabbitmq")

#: aio-pika's logger for callbacks that failed, and the message it logs them with
CALLBACK_LOGGER = "aio_pika.tools"
CALLBACK_FAILED = "Callback %r error: %s: %s"
#: the robust channel's close callback, which reopens the channel
_REOPENING = "RobustChannel._on_close"


class QuietChannelReopens(logging.Filter):
    """Demotes aio-pika's ERROR about a robust channel failing to reopen on a connection
    of ours that is away (the robust connection restores it) to DEBUG."""

    def __init__(self) -> None:
        super().__init__()
        self.connections: weakref.WeakSet[AbstractRobustConnection] = weakref.WeakSet()

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if not isinstance(args, tuple) or not args or not self._reopening_while_away(args[0]):
            return True
        # rendered now: aio-pika deletes the callback once it ran, so a record rendered
        # later (a queue handler's, caplog's) could no longer show it
        text = record.getMessage()
        if record.levelno < logging.ERROR:  # aio-pika's DEBUG record with the traceback
            record.msg, record.args = text, ()
            return True
        if record.msg != CALLBACK_FAILED:
            return True
        if not logging.getLogger(record.name).isEnabledFor(logging.DEBUG):
            return False
        record.msg, record.args = f"{text} (its connection is away; it reopens with it)", ()
        record.levelno, record.levelname = logging.DEBUG, logging.getLevelName(logging.DEBUG)
        return True

    def _reopening_while_away(self, callback: object) -> bool:
        """True for a OneShotCallback reopening a robust channel of one of our
        connections, while that connection is away."""
        bound = getattr(callback, "callback", None)
        function = getattr(bound, "__func__", None)
        if getattr(function, "__qualname__", None) != _REOPENING:
            return False
        connection = getattr(getattr(bound, "__self__", None), "_connection", None)
        return (
            connection is not None
            and connection in self.connections
            and not connection.connected.is_set()
        )


_filter: QuietChannelReopens | None = None


def quiet_channel_reopens(connection: AbstractRobustConnection) -> None:
    """Demote the per-channel reopen ERRORs of ``connection`` while it is away (see the
    module's docstring). The filter goes on aio-pika's logger once per process and
    forgets a connection when it is collected."""
    global _filter
    if _filter is None:
        _filter = QuietChannelReopens()
        logging.getLogger(CALLBACK_LOGGER).addFilter(_filter)
    _filter.connections.add(connection)


#: aiormq's logger, and the message it logs each failed TCP connect with
CONNECT_LOGGER = "aiormq.connection"
CONNECT_FAILED = "error when creating transport: %r"


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
        else:
            return True
        if not logging.getLogger(record.name).isEnabledFor(logging.DEBUG):
            return False
        text = record.getMessage()
        record.msg, record.args = f"{text} ({note})", ()
        record.levelno, record.levelname = logging.DEBUG, logging.getLevelName(logging.DEBUG)
        return True


_connect_filter: QuietFailedConnects | None = None


def _refused_socket(error: object) -> bool:
    """Whether aiormq's ``error`` (it failed to open a socket) says the broker could not
    be reached (refused, unreachable, timed out), not that TLS failed (a certificate the
    client refused: news, shown)."""
    if not _unreachable(error):
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


#: aio-pika's logger for its robust connection's reconnection loop, and the WARNINGs it
#: logs each failed attempt with
ROBUST_LOGGER = "aio_pika.robust_connection"
ATTEMPT_FAILED = 'Connection attempt to "%s" failed: %s. Reconnecting after %r seconds.'
ATTEMPT_CANCELLED = 'Connection attempt to "%s" cancelled. Reconnecting after %r seconds.'
#: aiormq's WARNINGs (on CONNECT_LOGGER) as it gives a connection up: its reader failed
#: (the exception is the record's), or no frame came within the heartbeat timeout
READER_FAILED = "Cancelling cause reader exited abnormally"
STUCK = "Server connection %r was stuck. No frames were received in %d seconds."


class QuietOutageWarnings(logging.Filter):
    """Demotes the drivers' WARNINGs about a lost connection of ours, or a failed attempt
    to restore it, to DEBUG while the transport logs that outage (see the module's
    docstring)."""

    def __init__(self) -> None:
        super().__init__()
        #: each robust connection of ours -> its transport's Outages (weakly both ways:
        #: the Outages keeps its transport, which keeps the connection)
        self.watched: weakref.WeakKeyDictionary[AbstractRobustConnection, weakref.ref[Outages]] = (
            weakref.WeakKeyDictionary()
        )

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.WARNING:
            return True
        note = self._note(record)
        if note is None:
            return True
        if not logging.getLogger(record.name).isEnabledFor(logging.DEBUG):
            return False
        record.msg, record.args = f"{record.getMessage()} ({note})", ()
        record.levelno, record.levelname = logging.DEBUG, logging.getLevelName(logging.DEBUG)
        return True

    def _note(self, record: logging.LogRecord) -> str | None:
        """What to add to a record to demote, None for a record to leave as it is."""
        args = record.args if isinstance(record.args, tuple) else ()
        if record.name == ROBUST_LOGGER and record.msg in (ATTEMPT_FAILED, ATTEMPT_CANCELLED):
            outages = self._outages(args[0] if args else None)
            if outages is None or outages.lost_at is None or outages.closed():
                return None
            if record.msg == ATTEMPT_FAILED and not (len(args) > 1 and _unreachable(args[1])):
                if outages.refusals.reason is None or refusal(outages.url, args[1]) is None:
                    return None  # the broker said no, or restoring failed: news, shown
                return "the transport logged the refusal as an ERROR"
            return "the transport logged this outage, and logs when the connection is back"
        if record.name != CONNECT_LOGGER:
            return None
        if record.msg == STUCK and args:
            outages = self._outages_of_underlay(lambda underlay: underlay is args[0])
        elif record.msg == READER_FAILED and record.exc_info:
            error = record.exc_info[1]
            if not isinstance(error, ConnectionError):  # a malformed frame, a bug: shown
                return None
            outages = self._outages_of_underlay(lambda underlay: _reader_error(underlay) is error)
        else:
            return None
        if outages is None or outages.closed():
            return None
        return "the transport logs the lost connection"

    def _outages(self, connection: object) -> Outages | None:
        """The Outages of ``connection``, if it is a robust connection of ours."""
        try:
            ref = self.watched.get(connection)  # type: ignore[call-overload]
        except TypeError:  # not weakly referenceable, or unhashable: not ours
            return None
        return None if ref is None else ref()

    def _outages_of_underlay(self, match: Callable[[object], bool]) -> Outages | None:
        """The Outages of the robust connection of ours whose current aiormq connection
        ``match`` accepts."""
        for connection, ref in list(self.watched.items()):
            underlay = getattr(getattr(connection, "transport", None), "connection", None)
            if underlay is not None and match(underlay):
                return ref()
        return None


def _unreachable(error: object) -> bool:
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


def _reader_error(underlay: object) -> BaseException | None:
    """The exception aiormq's connection ``underlay`` ended its reader task with."""
    task = getattr(underlay, "_reader_task", None)
    task = getattr(task, "task", task)  # aiormq wraps its tasks (a TaskWrapper)
    if not isinstance(task, asyncio.Task) or not task.done() or task.cancelled():
        return None
    return task.exception()


_outage_filter: QuietOutageWarnings | None = None


def quiet_outage_warnings(connection: AbstractRobustConnection, outages: Outages) -> None:
    """Demote the drivers' WARNINGs about an outage of ``connection`` that ``outages``
    logs (see the module's docstring). The filter goes on their loggers once per process
    and forgets a connection when it is collected."""
    global _outage_filter
    if _outage_filter is None:
        _outage_filter = QuietOutageWarnings()
        logging.getLogger(ROBUST_LOGGER).addFilter(_outage_filter)
        logging.getLogger(CONNECT_LOGGER).addFilter(_outage_filter)
    _outage_filter.watched[connection] = weakref.ref(outages)


class Outages:
    """One WARNING when a transport's connection is lost and one INFO when it is back,
    once per outage however many attempts to restore it fail meanwhile; nothing once
    ``closed()`` says the transport is closed."""

    def __init__(self, url: str, reconnect_interval: float, closed: Callable[[], bool]) -> None:
        self.url = url
        self.reconnect_interval = reconnect_interval
        self._closed = closed
        #: when the connection was lost (time.monotonic()); None while it is up
        self.lost_at: float | None = None
        #: the broker refusing the reconnections (see _refusals)
        self.refusals = Refusals(url, reconnect_interval)
        #: why the open outage goes on, from its latest failure (``outage_reason``)
        self.why: tuple[str, str] | None = None

    def watch(self, connection: AbstractRobustConnection) -> None:
        """Log the outages of ``connection``; demote aio-pika's ERROR per channel meanwhile
        to DEBUG (see :func:`quiet_channel_reopens`), and the drivers' WARNINGs that
        repeat ours (see :func:`quiet_outage_warnings`)."""
        outages = weakref.ref(self)  # the connection's callbacks must not keep us alive

        def lost(sender: object, exc: BaseException | None = None) -> None:
            me = outages()
            if me is not None:  # sender: the robust connection, with the lost one in it
                refused = refusal(me.url, exc)
                if refused is not None:  # an attempt to reconnect, refused
                    me.refused(refused, sender)
                else:
                    me.lost(lost_reason(sender, exc))

        def restored(sender: object) -> None:
            me = outages()
            if me is not None:
                me.restored(sender)

        connection.close_callbacks.add(lost)
        connection.reconnect_callbacks.add(restored)
        quiet_channel_reopens(connection)
        quiet_outage_warnings(connection, self)

    def closed(self) -> bool:
        """Whether the transport is closed (its outages are no longer logged)."""
        return self._closed()

    def down_for(self) -> float | None:
        """Seconds since the connection was lost; None while it is up."""
        lost = self.lost_at
        return None if lost is None else time.monotonic() - lost

    def reason(self) -> tuple[str, str] | None:
        """Why the connection is not back (the latest failure); None while it is up."""
        return None if self.lost_at is None else self.why

    def lost(self, reason: str) -> None:
        """The connection dropped, or an attempt to restore it failed (logged once)."""
        if self._closed():
            return
        shown = redact_url(self.url)
        self.why = (UNREACHABLE, f"lost the connection to RabbitMQ at {shown} ({reason})")
        if self.lost_at is not None:
            return
        self.lost_at = time.monotonic()
        logger.warning(
            "lost the connection to RabbitMQ at %s (%s); reconnecting every %gs",
            shown,
            reason,
            self.reconnect_interval,
            extra=log_fields("outage", transport=shown, reason=reason),
        )

    def refused(self, refused: Refusal, connection: object) -> None:
        """The broker refused an attempt to reconnect (an ERROR once per outage)."""
        if self._closed():
            return
        if self.lost_at is None:
            self.lost_at = time.monotonic()
        self.refusals.refused(refused, connection, redact_url(self.url))
        self.why = self.refusals.latest

    def restored(self, connection: object = None) -> None:
        """The robust connection is back, with every channel, queue and consumer."""
        lost, self.lost_at, self.why = self.lost_at, None, None
        refused = self.refusals.over(connection)
        if self._closed():
            return
        lasted = None if lost is None else time.monotonic() - lost
        downtime = f" after {lasted:.1f}s" if lasted is not None else ""
        if refused:
            downtime += f" (the broker had refused {refused} attempt(s))"
        shown = redact_url(self.url)
        logger.info(
            "the connection to RabbitMQ at %s is back%s",
            shown,
            downtime,
            extra=log_fields(
                "outage_over",
                transport=shown,
                outage_s=None if lasted is None else round(lasted, 1),
            ),
        )
