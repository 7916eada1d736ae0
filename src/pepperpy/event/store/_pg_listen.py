"""Live wake-ups of a PostgreSQL store: one LISTEN connection on each event loop.

The appending transaction notifies on commit; :func:`listen` keeps a connection
listening for that on the loop, wakes the loop's waiters on each notification and after
each (re)connect (notifications lost in between cost nothing: every waiter re-reads),
and pings the connection when it has been silent, replacing it if it stops answering.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from typing import Any

from ._pg_connect import Watchdog, shielded_connect, tune_socket
from ._pg_loops import OnLoop, Status
from ._pg_options import PostgresOptions, explain
from ._pg_schema import LISTEN_CHANNEL

__all__ = ["RECONNECT_INTERVAL", "listen"]

logger = logging.getLogger("pepperpy.event.store")

#: while the listener is down, waiters re-read this often
RECONNECT_INTERVAL = 0.5
_LISTENER_NAME = "pepperpy-event-listener"


def _notified(on: OnLoop, connection: Any, pid: int, channel: str, payload: str) -> None:
    # only a wake-up: the payload (a head) is not trusted, as a channel named after the
    # URL may be shared by stores in other schemas (see LISTEN_CHANNEL); waiters re-read
    on.notified()


async def listen(
    on: OnLoop,
    status: Status,
    asyncpg: Any,
    dsn: str,
    options: PostgresOptions,
    errors: tuple[type[Exception], ...],
    legacy: str,
) -> None:
    """Keep one LISTEN connection up for the loop; wake every waiter after each
    (re)connect.

    It listens on the channel of the tables its session finds (read with
    :data:`LISTEN_CHANNEL`, in the same search_path as the pool's), and on ``legacy``,
    the channel named after the URL that earlier versions notify; a notification on
    either only wakes the waiters, who re-read.

    A connection that goes silent (a partition, a NAT box that forgot it) would
    never say so: it is pinged after every ``listener_ping`` seconds and replaced if
    the answer takes as long again. Until a new one listens, waiters re-read every
    ``RECONNECT_INTERVAL`` seconds. It never holds the backend (see ``Status``).
    """
    settings = {"application_name": _LISTENER_NAME}
    if options.schema is not None:
        settings["search_path"] = options.schema  # as the pool's connections
    while not status.closed:
        dropped = asyncio.Event()
        try:
            connection = await shielded_connect(
                on.openings,
                asyncpg.connect,
                dsn,
                timeout=options.connect_timeout,
                server_settings=settings,
            )
        except errors:
            await asyncio.sleep(RECONNECT_INTERVAL)
            continue
        try:
            tune_socket(connection, options.command_timeout)
            connection.add_termination_listener(_on_drop(dropped))
            with Watchdog(connection, options.command_timeout):
                channel = await connection.fetchval(LISTEN_CHANNEL)
                if channel is not None:
                    for name in (channel, legacy):
                        await connection.add_listener(name, functools.partial(_notified, on))
            if channel is None:  # no tables (dropped by hand?): waiters re-read meanwhile
                logger.warning(
                    "PostgreSQL: the LISTEN connection finds no pepperpy_events table; trying again"
                )
                await asyncio.sleep(RECONNECT_INTERVAL)
                continue
            on.listener = connection
            on.connected = True
            on.notified()  # anything committed while not listening is re-read now
            await _watch(connection, dropped, options.listener_ping)
        except errors as exc:
            if not status.closed:
                logger.warning(
                    "PostgreSQL: the LISTEN connection failed (%s); reconnecting",
                    explain(options, exc),
                )
        finally:
            on.connected = False
            on.listener = None
            if not connection.is_closed():
                connection.terminate()
        on.wake()


async def _watch(connection: Any, dropped: asyncio.Event, every: float) -> None:
    """Return when ``dropped`` is set (the connection ended); meanwhile ping it after
    ``every`` seconds of waiting, and cut it off if no answer comes within ``every``."""
    while True:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(every):
                await dropped.wait()
        if dropped.is_set():
            return
        watchdog = Watchdog(connection, every)
        try:
            with watchdog:
                await connection.fetchval("SELECT 1")
        except Exception as exc:
            if watchdog.fired:
                raise TimeoutError(f"it did not answer a ping within {every:g} s") from exc
            raise


def _on_drop(dropped: asyncio.Event) -> Any:
    """A termination callback for asyncpg that sets ``dropped``."""

    def callback(connection: Any) -> None:
        dropped.set()

    return callback
