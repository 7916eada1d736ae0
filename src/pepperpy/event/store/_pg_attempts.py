"""Work on a PostgreSQL connection, bounded, and done once more when the connection was
lost before anything could have committed.

Both PostgreSQL stores run everything through :class:`Attempts`: the event store on the
connections of each loop's pool (:class:`~._pg_pool.Pools`), the checkpoint store on the
one connection it keeps on each loop. Where an attempt's connection comes from and goes
back to is the store's (a :class:`Lender`), and so are the words of its errors; which
asyncpg errors count, when a connection counts as lost, how long the server may take,
when the work is done once more and what is logged then, are decided here, once.
"""

from __future__ import annotations

import asyncio
import difflib
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from .._errors import ConfigurationError, StoreError
from ._pg_connect import Progress, Watchdog, connection_lost
from ._pg_options import SECONDS, PostgresOptions, explain
from .base import redact_url

__all__ = ["Attempts", "Failed", "Lender", "SetupWatchdog"]

T = TypeVar("T")

#: the SQLSTATEs of a server refusing a setting as a connection opens: an unrecognized
#: parameter, an invalid value, an invalid name
_REFUSED_SETTING = frozenset({"42704", "22023", "42602"})
#: the store's own URL options, which a misspelt option may have meant
_OWN_OPTIONS = ("schema", *SECONDS)
_QUOTED = re.compile(r'"([^"]+)"')


class Lender(Protocol):
    """Where an attempt's connection comes from, and where it goes afterwards.

    Each connection :meth:`acquire` returns goes to exactly one of :meth:`release` and
    :meth:`discard`.
    """

    async def acquire(self) -> Any:
        """A connection for one attempt; raises the store's own error if there is none.

        Bounded by the store (``connect_timeout``), waiting for a busy connection too."""

    async def release(self, connection: Any, watchdog: Watchdog) -> None:
        """The attempt is over and ``connection`` still works: give it back (bounded by
        ``watchdog``); never raises."""

    def discard(self, connection: Any) -> None:
        """``connection`` is lost, or its caller was cancelled mid-statement: cut it off,
        never to be used again."""

    async def renew(self, timed_out: bool) -> None:
        """Before the work is done once more: ``timed_out`` False means the server dropped
        a connection, and may have dropped others of the same store too."""


@dataclass(frozen=True, slots=True)
class Failed:
    """How an attempt failed, for the store to word its error."""

    #: asyncpg's exception (the store's error is raised from it)
    error: Exception
    #: what went wrong, in words
    reason: str
    #: the connection itself is gone (or the server was silent past ``command_timeout``)
    lost: bool = False
    #: the server was silent past ``command_timeout``, and the connection was cut off
    timed_out: bool = False
    #: lost once a statement that commits may have been sent: whether it did is unknown
    unknown: bool = False
    #: a statement that commits (a ``COMMIT``, a write in autocommit) may have been sent
    committing: bool = False

    @property
    def how(self) -> str:
        """How the connection went, in words (for a ``lost`` one)."""
        return "no answer came" if self.timed_out else "the connection was lost"

    @property
    def written(self) -> bool | None:
        """What the store's error says of the work (:attr:`StoreError.written`).

        ``False`` when nothing of it can have committed: no statement that commits was
        sent (every attempt failed before: connecting, a statement refused, a connection
        lost or silent before its ``COMMIT``), or the server answered that statement
        with an error on a connection still open. asyncpg raises a server's error only
        once the server says it is ready for the next statement, so the transaction was
        rolled back by then (an error raised after the commit record turns into a
        ``PANIC``, which ends the connection before that). ``None`` otherwise: the
        statement that commits went to the socket and no answer saying it failed came
        back, so it may have committed.
        """
        if not self.committing:
            return False
        if not self.lost and _refused_by_server(self.error):
            return False
        return None


def _always() -> bool:
    return True


def _refused_by_server(error: BaseException) -> bool:
    """Whether ``error`` is the server's ``ERROR`` answer to a statement (asyncpg's
    exception for it): the statement, and a ``COMMIT`` too, failed and was rolled back.

    A ``FATAL`` (the session ends; a ``COMMIT`` may have committed before it) is not one,
    nor is an error asyncpg made itself (it carries no severity), nor one whose severity
    the server gave only in its own language (``severity_en`` came with PostgreSQL 9.6).
    """
    severity = getattr(error, "severity_en", None) or getattr(error, "severity", None)
    return severity == "ERROR" and bool(getattr(error, "sqlstate", None))


class SetupWatchdog(Watchdog):
    """A setup's :class:`Watchdog`, whose bound the setup may lift for work that takes
    as long as it takes (a schema migration building an index over the whole log).

    ``doing`` says what that work is while the bound is lifted; a failure meanwhile is
    worded with it.
    """

    __slots__ = ("doing",)

    def __init__(self, connection: Any, seconds: float) -> None:
        super().__init__(connection, seconds)
        #: the work under way with the bound lifted, in words (None: bounded)
        self.doing: str | None = None

    def lift(self, doing: str) -> None:
        """No bound from now on, while ``doing`` runs: a connection that died is still
        noticed (TCP keepalive, ``TCP_USER_TIMEOUT``), a slow server is waited for."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self.doing = doing

    def restore(self) -> None:
        """``seconds`` from now on, as when the setup started."""
        self.doing = None
        if self._handle is None and not self.fired:
            self._handle = asyncio.get_running_loop().call_later(self.seconds, self._fire)


class Attempts:
    """The bounded way a store's work runs on asyncpg connections (see the module).

    ``logger`` is the store's: the work done once more is logged there, as a warning.
    """

    def __init__(self, asyncpg: Any, options: PostgresOptions, logger: logging.Logger) -> None:
        #: the asyncpg module (imported by the store, which may require it lazily)
        self.asyncpg = asyncpg
        self.options = options
        self._logger = logger
        #: what asyncpg raises: server errors, client errors, its internal errors, sockets
        self.errors: tuple[type[Exception], ...] = (
            asyncpg.PostgresError,
            asyncpg.InterfaceError,
            asyncpg.InternalClientError,
            OSError,
        )
        #: what connecting raises besides: asyncpg refuses some URL values with ValueError
        self.connect_errors: tuple[type[Exception], ...] = (*self.errors, ValueError)

    def reason(self, exc: BaseException, *, timed_out: bool = False) -> str:
        """What went wrong, in words (a timeout's own text is empty)."""
        return explain(self.options, exc, timed_out=timed_out)

    def failed(self, exc: Exception) -> Failed:
        """``exc`` as a failure that lost no connection (one refused, say)."""
        return Failed(exc, self.reason(exc))

    def cannot_connect(
        self, exc: BaseException, url: str, head: str
    ) -> StoreError | ConfigurationError:
        """Why connecting to ``url`` failed with ``exc`` (one of :attr:`connect_errors`).

        An option asyncpg refused (``sslmode=bogus``), or one the server refused as a
        setting (:meth:`misconfigured`), is a :class:`ConfigurationError`;
        anything else a :class:`StoreError` saying ``{head} at {url}`` and why. The URL's
        password is never shown.
        """
        where = redact_url(url)
        if isinstance(exc, self.asyncpg.ClientConfigurationError):
            return ConfigurationError(f"PostgreSQL URL {where}: {exc}")
        refused = self.misconfigured(exc, url)
        if refused is not None:
            return refused
        error = StoreError(f"{head} at {where}: {self.reason(exc)}")
        error.written = False  # no connection: nothing was sent
        return error

    def misconfigured(self, exc: BaseException, url: str) -> ConfigurationError | None:
        """The :class:`ConfigurationError` for a server refusing, as a connection opens, a
        setting the URL passed on to it (``None`` if ``exc`` is something else).

        An option the store does not know goes to the server as a setting: a typo
        (``?command_timout=5``) is then an unrecognized parameter (42704), a bad value
        (``?lock_timeout=abc``) an invalid one (22023), a bad name 42602. Trying again
        cannot help, so this is no outage to wait out.
        """
        if not isinstance(exc, self.asyncpg.PostgresError):
            return None
        if getattr(exc, "sqlstate", None) not in _REFUSED_SETTING:
            return None
        problem = f"the server refused an option of the URL: {exc}"
        named = _QUOTED.search(str(exc))
        if named is not None:
            close = difflib.get_close_matches(named.group(1), _OWN_OPTIONS, n=1, cutoff=0.8)
            if close and close[0] != named.group(1):
                problem += f" (did you mean ?{close[0]}=?)"
        return ConfigurationError(f"PostgreSQL URL {redact_url(url)}: {problem}")

    async def run(
        self,
        work: Callable[[Any, Progress], Awaitable[T]],
        lender: Lender,
        *,
        what: str,
        failure: Callable[[Failed], BaseException],
        unsent: str = "nothing was written",
        may_retry: Callable[[], bool] = _always,
    ) -> T:
        """Run ``work(connection, progress)`` on a connection of ``lender``, bounded.

        Every asyncpg error comes out as ``failure(failed)``, raised from it
        (``failed.written`` says whether the work may have committed: the store puts it on
        its error). Each attempt waits at most ``command_timeout`` seconds for the server;
        a connection that did not answer in time is treated as lost, and is cut off. If
        the connection breaks or times out before anything could have committed (nothing
        was sent under ``progress.commit()``), the work is done once more on a new
        connection, unless ``may_retry()`` says no (the store is closing): nothing was
        written, so that is safe for reads and writes alike; it is logged as a warning,
        saying ``what`` was done and ``unsent``. Once ``work`` may have sent a statement
        that commits, a lost or silent connection leaves the outcome unknown
        (``failed.unknown``): that is never done again here.

        A caller cancelled mid-statement has its connection discarded (cut off) instead
        of released, so the cancellation takes effect at once: asyncpg would wait for a
        cancel request first, made on a new connection to a server that may be silent.
        """
        clock = asyncio.get_running_loop().time
        waited = 0.0  # for connections, over both attempts
        for retry in (False, True):
            asked = clock()
            connection = await lender.acquire()
            waited += clock() - asked
            progress = Progress(connection)
            watchdog = Watchdog(connection, self.options.command_timeout)
            timed_out = lost = False
            with watchdog:
                try:
                    result = await work(connection, progress)
                except asyncio.CancelledError:
                    lender.discard(connection)
                    raise
                except self.errors as exc:
                    error = exc
                    timed_out = watchdog.fired
                    lost = timed_out or connection_lost(self.asyncpg, exc, connection)
                    if not lost:
                        await lender.release(connection, watchdog)
                except BaseException:  # the library's own refusal, say
                    await lender.release(connection, watchdog)
                    raise
                else:
                    # within the watchdog's bound: a release nobody answers is cut off
                    await lender.release(connection, watchdog)
                    return result
            if lost:
                lender.discard(connection)
            reason = self.reason(error, timed_out=timed_out)
            if timed_out and waited >= 1.0:  # the call took longer than the bound it names
                reason += f", after the call waited {waited:.1f} s for a free connection"
            failed = Failed(
                error,
                reason,
                lost=lost,
                timed_out=timed_out,
                unknown=lost and progress.committing,
                committing=progress.committing,
            )
            if not lost or retry or progress.committing or not may_retry():
                raise failure(failed) from error
            self._logger.warning(
                "%s: %s (%s); trying once more on a new connection", what, failed.reason, unsent
            )
            await lender.renew(timed_out)
        raise AssertionError("unreachable")  # pragma: no cover

    async def set_up(
        self,
        setup: Callable[[Any], Awaitable[None]],
        lender: Lender,
        *,
        what: str,
        failure: Callable[[str], BaseException],
        watch: Callable[[Any, SetupWatchdog], Any] | None = None,
    ) -> Any:
        """Run ``setup(connection)`` on a connection of ``lender``, bounded, and return
        that connection, given back to ``lender`` (released).

        ``watch(connection, watchdog)``, if given, is what ``setup`` gets instead of the
        connection (one that may lift the bound for long work: see
        :class:`SetupWatchdog`); a failure during such work says what it was.

        If the connection breaks, or stays silent past ``command_timeout``, during the
        setup (a restart, a failover, an admin's ``pg_terminate_backend``), the setup is
        done once more on a new connection, as :meth:`run` does for other work, logged
        as a warning saying ``what`` failed: a setup must therefore be safe to repeat.
        A failure that stays is raised as ``failure(reason)``, from asyncpg's exception,
        with ``written`` False (the work the setup was for never started). On any failure
        the connection is discarded (cut off).
        """
        for retry in (False, True):
            connection = await lender.acquire()
            watchdog = SetupWatchdog(connection, self.options.command_timeout)
            given = connection if watch is None else watch(connection, watchdog)
            try:
                with watchdog:
                    await setup(given)
                    await lender.release(connection, watchdog)
                return connection
            except self.errors as exc:
                lost = not watchdog.fired and connection_lost(self.asyncpg, exc, connection)
                lender.discard(connection)
                reason = self.reason(exc, timed_out=watchdog.fired)
                if lost:  # asyncpg's own words may be about what failed after the loss
                    reason = f"the connection was lost ({reason})"
                if watchdog.doing is not None:
                    reason += f", during {watchdog.doing}"
                if retry or not (lost or watchdog.fired):
                    raise _nothing_written(failure(reason)) from exc
                self._logger.warning("%s: %s; trying once more on a new connection", what, reason)
            except BaseException:
                lender.discard(connection)
                raise
        raise AssertionError("unreachable")  # pragma: no cover


def _nothing_written(error: BaseException) -> BaseException:
    """``error`` (a setup's failure: the caller's work never started) saying so."""
    if isinstance(error, StoreError):
        error.written = False
    return error
