"""``pepperpy-event serve``: the web console (``_console``) on a socket of our own."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import signal
import socket
from collections.abc import Iterator
from typing import Any

import click

from .._deps import require
from ._errors import CommandError
from ._shell import emit, note, open_store, run, store_option
from ._urls import shown

__all__ = ["GRACEFUL_SECONDS", "address", "listen", "serve"]


@click.command()
@store_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option(
    "--port",
    default=8080,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port (0 picks a free one; the URL is printed).",
)
@click.option(
    "--allow-host",
    "allow_hosts",
    multiple=True,
    metavar="NAME[:PORT]",
    help="Also answer requests for this host name (a proxy's, a LAN name), on any port or "
    "only PORT ([::1]:8080 for IPv6); repeatable. '*' answers any (turns off the "
    "DNS-rebinding check).",
)
def serve(store: str, host: str, port: int, allow_hosts: tuple[str, ...]) -> None:
    """Serve a web console: browse streams and events, follow the log live (SSE).

    Only requests for 127.0.0.1, localhost, ::1, --host (on any port) or an
    --allow-host name (on its port if it gives one) are answered (421 otherwise): a web
    page that rebinds its own name to this machine cannot read the console.
    """
    for name in allow_hosts:
        if not name.strip():  # an unset shell variable, say: it adds no name at all
            raise CommandError(f"--allow-host needs a host name (or '*' for any), got {name!r}")
    require("starlette", extra="web", feature="pepperpy-event serve")
    uvicorn = require("uvicorn", extra="web", feature="pepperpy-event serve")
    from ._console import console_app
    from ._hosts import LOOPBACK_HOSTS, allowed_host

    for name in allow_hosts:
        if name.strip() != "*":
            try:
                allowed_host(name)
            except ValueError as exc:
                raise CommandError(f"--allow-host {name!r}: {exc}") from None

    if host.startswith("[") and host.endswith("]"):  # an IPv6 address as a URL writes it
        host = host[1:-1]
    hosts = {*LOOPBACK_HOSTS, host, *allow_hosts}

    stopping = asyncio.Event()  # set by Ctrl-C or SIGTERM: live tails end, serving stops
    servers: list[Any] = []

    def stop(signum: int) -> bool:
        """Stop serving gracefully (a second Ctrl-C: at once); False before serving starts."""
        if not servers:
            return False
        if stopping.is_set() and signum == signal.SIGINT:
            servers[0].force_exit = True
        servers[0].should_exit = True
        stopping.set()
        return True

    async def work() -> None:
        with listen(host, port) as listener, _quiet_cut_tails(stopping):
            async with open_store(store, reading=True, wait=True) as events:
                config = uvicorn.Config(
                    console_app(events, allowed_hosts=hosts, stopping=stopping),
                    log_level="warning",
                    lifespan="off",
                    timeout_graceful_shutdown=GRACEFUL_SECONDS,
                )
                server = _server(config)
                servers.append(server)
                serving = asyncio.ensure_future(_serve_until_stopped(server, listener))
                # uvicorn offers no startup event to wait on, only the ``started`` flag
                while not server.started and not serving.done():  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
                if server.started:
                    bound = listener.getsockname()[1]
                    url = f"http://{address(host.replace('%', '%25'), bound)}/"  # a zone id
                    emit(f"pepperpy-event console on {url} (store {shown(store)})")
                    if not allow_hosts and not _is_loopback(host):
                        names = ", ".join(sorted(hosts))
                        note(
                            f"the console answers only requests for {names}; "
                            "give --allow-host NAME for each name its clients use"
                        )
                await serving  # returns once the requests in flight are answered
                if not server.started:
                    raise CommandError(f"could not listen on {address(host, port)}")
            # only now is the store closed: no request is left to find it closed

    try:
        run(work, on_signal=stop)
    except KeyboardInterrupt:  # a signal before the server was up
        pass
    note("stopped")


#: how long a stop waits for the requests in flight (live tails end at once)
GRACEFUL_SECONDS = 10


def _server(config: Any) -> Any:
    """A uvicorn server that leaves SIGINT and SIGTERM to ``serve``.

    uvicorn's own handlers raced ours (both saw Ctrl-C), and it raises the signal again
    once it has stopped: the work was cancelled while requests were in flight (answered
    "the event store is closed") and live tails ended in tracebacks.
    """
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    return Server(config)


@contextlib.contextmanager
def _quiet_cut_tails(stopping: asyncio.Event) -> Iterator[None]:
    """Keep uvicorn from logging as an ERROR the live tails cut off on purpose at a stop
    (their clients had stopped reading: ``_console_tail.TailResponse``)."""
    from ._console_tail import UNFINISHED

    def keep(record: logging.LogRecord) -> bool:
        return not (stopping.is_set() and record.getMessage() == UNFINISHED)

    errors = logging.getLogger("uvicorn.error")
    errors.addFilter(keep)
    try:
        yield
    finally:
        errors.removeFilter(keep)


def _is_loopback(host: str) -> bool:
    """True for ``localhost`` and a loopback address (``127.0.0.1``, ``::1``)."""
    try:
        return host.lower() == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def address(host: str, port: int) -> str:
    """``host:port`` as a URL writes it: an IPv6 address in brackets (``[::1]:8080``)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``, or a one-line error (busy port, unknown host).

    Bound here rather than by uvicorn, which reports these failures with ``sys.exit``.
    The socket says it is TCP (``proto``): asyncio turns Nagle's algorithm off only for
    such sockets' connections, and ``socket.create_server`` leaves ``proto`` 0, so each
    keep-alive request (and each small Server-Sent Event after another) waited ~40 ms
    for the client's delayed ACK.
    """
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        created = socket.create_server((host, port), family=family)
        return socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP, created.detach())
    except socket.gaierror as exc:  # an unknown host
        raise CommandError(f"could not listen on {address(host, port)}: {exc.strerror}") from None
    except OSError as exc:  # a busy port, an address not on this machine, no permission
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise CommandError(f"could not listen on {address(host, port)}: {reason}") from None


async def _serve_until_stopped(server: Any, listener: socket.socket) -> None:
    """``server.serve`` on ``listener``; a ``sys.exit`` in uvicorn's startup ends it quietly."""
    with contextlib.suppress(SystemExit):
        await server.serve(sockets=[listener])
