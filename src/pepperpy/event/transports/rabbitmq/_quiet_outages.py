"""The drivers' WARNINGs about a lost connection, DEBUG while the transport logs it.

:class:`QuietOutageWarnings` demotes the WARNINGs the drivers add to the transport's
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
attempt the broker answered with a refusal the transport did not log (a forced close)
or whose restore of the channels failed (``NOT_FOUND``, say).
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING

from ._quiet_connects import CONNECT_LOGGER, ROBUST_LOGGER, demote, unreachable
from ._refusals import refusal

if TYPE_CHECKING:
    from aio_pika.abc import AbstractRobustConnection

    from ._logs import Outages

__all__ = ["QuietOutageWarnings", "quiet_outage_warnings"]

#: the WARNINGs aio-pika logs (on ROBUST_LOGGER) each failed attempt with
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
        return demote(record, note)

    def _note(self, record: logging.LogRecord) -> str | None:
        """What to add to a record to demote, None for a record to leave as it is."""
        args = record.args if isinstance(record.args, tuple) else ()
        if record.name == ROBUST_LOGGER and record.msg in (ATTEMPT_FAILED, ATTEMPT_CANCELLED):
            outages = self._outages(args[0] if args else None)
            if outages is None or outages.lost_at is None or outages.closed():
                return None
            if record.msg == ATTEMPT_FAILED and not (len(args) > 1 and unreachable(args[1])):
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
