"""Working around nats-py's client: closing one whose connection broke, the socket of a
reconnect attempt that failed, and a ``tls://`` server that offers no TLS.

nats-py leaves both half done (a ``close()`` that stops at the first error, a socket
replaced without being closed); these finish the job through its internals, as it has
no public way to.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from typing import TYPE_CHECKING, Any

from ..base import quietly

if TYPE_CHECKING:
    from nats.aio.client import Client

__all__ = ["TlsNotOffered", "close_client", "drop_attempt", "drop_failed_tls", "new_client"]


class TlsNotOffered(Exception):
    """A ``tls://`` server answered without requiring TLS (see :func:`new_client`)."""


logger = logging.getLogger("pepperpy.event.transports.nats")


def new_client(*, require_tls: bool = False) -> Client:
    """A nats-py client that goes on with a ``tls://`` server only over TLS (with
    ``require_tls``, the transport was given TLS settings: with every server).

    nats-py upgrades to TLS only when the server's greeting requires it: a ``tls://``
    URL of a server without TLS (a wrong port, a server configured without it, or
    someone in between rewriting the greeting) connected in plain text, sending the
    URL's credentials and every event unencrypted. This client raises instead, before
    anything is sent (nats-py reports it to the error callback, as an attempt that
    failed; see ``refused_tls``).
    """
    return _client_class(require_tls)()


@functools.cache
def _client_class(require_tls: bool) -> type[Client]:
    from nats.aio.client import Client
    from nats.errors import Error as NatsError

    class NotOffered(TlsNotOffered, NatsError):  # nats-py's connect loop catches these
        pass

    class TlsClient(Client):
        async def _process_info(
            self, info: dict[str, Any], initial_connection: bool = False
        ) -> None:
            server = self._current_server
            if (
                initial_connection
                and server is not None
                and (server.uri.scheme == "tls" or require_tls)
                and not info.get("tls_required")
            ):
                asked = "the URL says tls://" if server.uri.scheme == "tls" else "TLS settings"
                if server.uri.scheme != "tls":
                    asked += " (tls, tls_ca, tls_cert, tls_key or tls_hostname) were given"
                raise NotOffered(
                    f"the server at {server.uri.hostname}:{server.uri.port} does not require "
                    "TLS (its greeting says so), so the connection would not be encrypted; "
                    f"{asked}: is it the right port, and is TLS configured on that server?"
                )
            await super()._process_info(info, initial_connection)

    return TlsClient


def drop_attempt(nc: Client) -> None:
    """Close the socket of a reconnect attempt that failed.

    nats-py connects the next attempt through the same transport object, replacing the
    socket without closing it: one that connected and then got no answer (a server that
    hangs) stayed open until garbage-collected, with a ResourceWarning.
    """
    transport = getattr(nc, "_transport", None)
    if transport is not None and not nc.is_connected:
        with contextlib.suppress(Exception):
            transport.close()


def drop_failed_tls(nc: Client) -> None:
    """Close and forget the socket of an attempt whose TLS handshake failed.

    The upgrade moved the socket to a TLS protocol, which closed it on the failure; the
    stream writer nats-py keeps is never told, so ``Client.close()`` waited for it (in
    ``wait_closed()``) until :func:`close_client`'s deadline: ``connect_timeout`` more
    for a ``start()`` that had already failed, and nats-py itself waited for it before
    trying the next server of a cluster (until the deadline failed the ``start()``).
    """
    transport = getattr(nc, "_transport", None)
    if transport is not None and not nc.is_connected:
        with contextlib.suppress(Exception):
            transport.close()
        nc._transport = None


async def close_client(nc: Client, deadline: float) -> None:
    """Close a nats-py client for good, also when its connection is broken.

    ``Client.close()`` first writes out what it buffered while reconnecting; on a socket
    the server reset, that raises, and close() stops half-way, leaving its subscription
    tasks running and the socket open (a later close() returns at once, as the client
    counts as closed). So this finishes the job where close() gave up. It never raises
    (only the caller's own cancellation propagates) and waits at most until ``deadline``.
    """
    completed = await quietly(nc.close(), "closing the NATS connection", logger, deadline=deadline)
    if completed:
        return
    # nats-py has no public way to finish a close that failed: use its internals
    subscriptions = getattr(nc, "_subs", {})
    tasks = [getattr(sub, "_wait_for_msgs_task", None) for sub in subscriptions.values()]
    subscriptions.clear()
    pending = [task for task in tasks if task is not None and not task.done()]
    for task in pending:
        task.cancel()
    for name in ("_reading_task", "_ping_interval_task", "_flusher_task", "_reconnection_task"):
        task = getattr(nc, name, None)
        if task is not None and not task.done():
            task.cancel()
            pending.append(task)
    transport = getattr(nc, "_transport", None)
    if transport is not None:
        with contextlib.suppress(Exception):
            transport.close()
    if pending:
        await asyncio.wait(pending, timeout=1.0)
