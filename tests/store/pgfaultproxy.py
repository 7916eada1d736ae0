"""A TCP proxy on loopback that breaks PostgreSQL connections one at a time, on cue.

The store's network-fault tests point a store at the proxy instead of the server, then
break the network the way real networks break, without touching the shared server:

* ``pause()`` / ``resume()``: a partition. Connections stay open but no byte moves in
  either direction; the client sees a silent peer, not an error. New connections are
  accepted and connected upstream, and are silent too.
* ``drop()``: every open connection is reset (RST).
* ``refuse()`` / ``heal()``: new connections are reset at once (a server that is down),
  or forwarded again.
* Per connection (a :class:`Link`, named by the ``application_name`` of its startup
  packet, so the store's ``pepperpy-event-listener`` can be told from its pool):
  ``link.pause()``, ``link.resume()``, ``link.drop()``: one connection goes silent, or
  is reset, while the others work.
* Hooks ``on_client`` and ``on_server`` see every chunk on its way and may answer
  ``"drop"`` (reset the connection instead of forwarding it: a statement or a reply
  lost), ``"pause"`` (the connection goes silent before forwarding it) or ``"hold"``
  (forward it, then nothing more in that direction, not even the end of the stream,
  until the link ends: the server's termination notice arrives, its close does not).
  They find the protocol's plain text in the chunks, so the URL should say
  ``sslmode=disable`` (:func:`proxied` adds it).

Only loopback: it listens on 127.0.0.1 and forwards to a loopback address; at most
``max_connections`` links are open at once (more are reset). ``async with
PgFaultProxy(port) as proxy`` starts it and, on exit, resets every connection and waits
for its tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import struct
from collections.abc import Callable
from types import TracebackType
from typing import Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = ["Link", "PgFaultProxy", "proxied"]

CHUNK = 65536
Action = Literal["drop", "pause", "hold"] | None
Hook = Callable[["Link", bytes], Action]


class Link:
    """One client connection through the proxy, and its upstream twin."""

    def __init__(
        self, number: int, client: asyncio.StreamWriter, server: asyncio.StreamWriter
    ) -> None:
        self.number = number
        #: the ``application_name`` the client sent in its startup packet, if any
        self.application: str | None = None
        self.closed = False
        #: free for hooks to remember things about this connection
        self.marks: set[str] = set()
        self._client = client
        self._server = server
        self._flowing = asyncio.Event()
        self._flowing.set()

    def pause(self) -> None:
        """This connection goes silent both ways (nothing is lost: ``resume`` sends it)."""
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    def drop(self) -> None:
        """Reset both ends of this connection."""
        self.closed = True
        _reset(self._client)
        _reset(self._server)
        self._flowing.set()  # let its pipes see the reset and end

    def __repr__(self) -> str:
        return f"Link({self.number}, {self.application!r}, closed={self.closed})"


class PgFaultProxy:
    """Forwards 127.0.0.1:<port> to a PostgreSQL server on loopback, faults on demand."""

    def __init__(
        self,
        upstream_port: int = 5432,
        *,
        upstream_host: str = "127.0.0.1",
        max_connections: int = 64,
    ) -> None:
        if not ipaddress.ip_address(upstream_host).is_loopback:
            raise ValueError(f"the fault proxy only forwards to loopback, not {upstream_host}")
        self.upstream = (upstream_host, upstream_port)
        self.max_connections = max_connections
        self.port = 0
        #: connections accepted so far (whatever became of them)
        self.accepted = 0
        self.on_client: Hook | None = None
        self.on_server: Hook | None = None
        self._refusing = False
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._links: list[Link] = []
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # -- lifecycle --------------------------------------------------------------------

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def close(self) -> None:
        """Stop listening, reset every connection, and wait for the proxy's tasks."""
        if self._server is not None:
            self._server.close()
            self._server = None
        self.on_client = self.on_server = None
        self._flowing.set()
        self.drop()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def __aenter__(self) -> PgFaultProxy:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- faults -----------------------------------------------------------------------

    def pause(self) -> None:
        """Every connection, open or new, goes silent (a partition)."""
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    def drop(self) -> int:
        """Reset every open connection; returns how many there were."""
        links = self.links()
        for link in links:
            link.drop()
        return len(links)

    def refuse(self) -> None:
        """From now on reset new connections at once."""
        self._refusing = True

    def heal(self) -> None:
        self._refusing = False

    def links(self, application: str | None = None) -> list[Link]:
        """The open connections, all of them or those of one ``application_name``."""
        return [
            link
            for link in self._links
            if not link.closed and (application is None or link.application == application)
        ]

    # -- plumbing ---------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.accepted += 1
        try:
            if self._refusing or len(self.links()) >= self.max_connections:
                _reset(writer)
                return
            try:
                upstream_reader, upstream_writer = await asyncio.open_connection(*self.upstream)
            except OSError:
                _reset(writer)
                return
            link = Link(self.accepted, writer, upstream_writer)
            self._links = [*self.links(), link]
            pipes = [
                asyncio.ensure_future(self._pipe(link, reader, upstream_writer, client=True)),
                asyncio.ensure_future(self._pipe(link, upstream_reader, writer, client=False)),
            ]
            try:
                await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
            except asyncio.CancelledError:
                pass  # closing: asyncio's stream server logs a handler ending cancelled
            finally:
                for pipe in pipes:
                    pipe.cancel()
                await asyncio.gather(*pipes, return_exceptions=True)
                link.closed = True
                _reset(upstream_writer)
        finally:
            _reset(writer)
            self._tasks.discard(task)

    async def _pipe(
        self,
        link: Link,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        client: bool,
    ) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(CHUNK):
                if client and link.application is None and b"application_name\x00" in data:
                    name = data.split(b"application_name\x00", 1)[1].split(b"\x00", 1)[0]
                    link.application = name.decode(errors="replace")
                await self._flowing.wait()
                await link._flowing.wait()
                hook = self.on_client if client else self.on_server
                action = None if hook is None else hook(link, data)
                if action == "pause":
                    link.pause()
                    await link._flowing.wait()
                if action == "drop" or link.closed:
                    link.drop()
                    return
                if writer.is_closing():
                    return
                writer.write(data)
                await writer.drain()
                if action == "hold":  # ended by the link's end (the other pipe's) or close()
                    await asyncio.get_running_loop().create_future()


def proxied(url: str, port: int, **options: object) -> str:
    """``url`` (a ``postgresql://`` URL of a loopback server) through the proxy on ``port``,
    with ``sslmode=disable`` and ``options`` added to its query."""
    parts = urlsplit(url)
    user, _, _ = parts.netloc.rpartition("@")
    netloc = f"{user}@127.0.0.1:{port}" if user else f"127.0.0.1:{port}"
    query = [*parse_qsl(parts.query), ("sslmode", "disable")]
    query += [(name, str(value)) for name, value in options.items()]
    return urlunsplit(parts._replace(netloc=netloc, query=urlencode(query)))


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST (SO_LINGER 0): the peer sees a reset, not an orderly close."""
    if writer.is_closing():
        return
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
