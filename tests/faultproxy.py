"""A TCP proxy on loopback that injects network faults between a client and a server.

Tests point a client (a bus transport, a store) at the proxy instead of the server, then
break the network the way real networks break, without touching the shared server:

* ``pause()`` / ``resume()``: a partition. Connections stay open but no byte moves in
  either direction (each direction holds at most one read chunk meanwhile, so memory
  stays bounded); the client sees a silent peer, not an error. New connections are
  accepted and connected upstream, and are silent too.
* ``drop()``: every open connection is reset (RST), as when a server or a NAT box dies.
* ``refuse()``: new connections are accepted and reset at once (a server that is down).
* ``blackhole()``: new connections are accepted and then never answered.
* ``heal()``: new connections are forwarded again.
* Per connection (a :class:`Link`): ``link.pause()``, ``link.resume()``, ``link.drop()``:
  one connection goes silent, or is reset, while the others work. Subclasses may name
  links from what the client sends (:meth:`FaultProxy.inspect`).
* Hooks ``on_client`` and ``on_server`` see every chunk on its way and may answer
  ``"drop"`` (reset the connection instead of forwarding it: a request or a reply lost),
  ``"pause"`` (the connection goes silent before forwarding it) or ``"hold"`` (forward it,
  then nothing more in that direction, not even the end of the stream, until the link
  ends: the server's last words arrive, its close does not).

Only loopback: it listens on 127.0.0.1 and forwards to a loopback address. At most
``max_connections`` links are open at once (more are reset). ``async with
FaultProxy(port) as proxy`` starts it and, on exit, resets every connection and waits for
its tasks, quietly: the proxy runs each connection in a task of its own, not in the one
asyncio's stream server would make (on Python 3.11 that one, cancelled, makes the server
log ``Exception in callback StreamReaderProtocol.connection_made.<locals>.callback`` at
ERROR).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import struct
from collections.abc import Callable
from types import TracebackType
from typing import Literal, Self

__all__ = ["Action", "FaultProxy", "Hook", "Link"]

CHUNK = 65536
Action = Literal["drop", "pause", "hold"] | None
Hook = Callable[["Link", bytes], Action]


class Link:
    """One client connection through the proxy, and its upstream twin (none when the
    proxy answers nothing: ``blackhole``)."""

    def __init__(
        self, number: int, client: asyncio.StreamWriter, server: asyncio.StreamWriter | None
    ) -> None:
        self.number = number
        #: a name a subclass found in what the client sent (PostgreSQL: application_name)
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
        if self._server is not None:
            _reset(self._server)
        self._flowing.set()  # let its pipes see the reset and end

    def __repr__(self) -> str:
        return f"Link({self.number}, {self.application!r}, closed={self.closed})"


class FaultProxy:
    """Forwards 127.0.0.1:<port> to a server on loopback, with faults on demand."""

    def __init__(
        self, upstream_port: int, *, upstream_host: str = "127.0.0.1", max_connections: int = 64
    ) -> None:
        if not ipaddress.ip_address(upstream_host).is_loopback:
            raise ValueError(f"the fault proxy only forwards to loopback, not {upstream_host}")
        self.upstream = (upstream_host, upstream_port)
        self.max_connections = max_connections
        self.port = 0
        #: connections accepted so far (connection attempts, whatever became of them)
        self.accepted = 0
        self.on_client: Hook | None = None
        self.on_server: Hook | None = None
        self._mode = "up"  # up | refuse | blackhole
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._links: list[Link] = []
        self._server: asyncio.AbstractServer | None = None
        self._closing = False
        #: each connection's task, and the client end it serves
        self._tasks: dict[asyncio.Task[None], asyncio.StreamWriter] = {}

    # -- lifecycle --------------------------------------------------------------------

    async def start(self) -> int:
        """Listen on a free loopback port; returns it (also in ``self.port``)."""
        self._closing = False
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def close(self) -> None:
        """Stop listening, reset every connection, and wait for the proxy's tasks.

        The tasks are the proxy's own (see :meth:`_accept`): cancelled here and gathered,
        they end without anything logged, even those that had not started yet or were
        still connecting upstream. A connection the server hands over after this point
        is reset at once."""
        self._closing = True
        server, self._server = self._server, None
        if server is not None:
            server.close()
        self.on_client = self.on_server = None
        self._flowing.set()
        self.drop()
        tasks = dict(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for writer in tasks.values():  # a task cancelled before it started reset nothing
            _reset(writer)
        if server is not None:
            await server.wait_closed()

    async def __aenter__(self) -> Self:
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
        """Forward again what a pause held back, and everything after it."""
        self._flowing.set()

    def drop(self) -> int:
        """Reset every open connection; returns how many there were."""
        links = self.links()
        for link in links:
            link.drop()
        return len(links)

    def refuse(self) -> None:
        """From now on accept new connections only to reset them (a server that is down)."""
        self._mode = "refuse"

    def blackhole(self) -> None:
        """From now on accept new connections and never answer them."""
        self._mode = "blackhole"

    def heal(self) -> None:
        """From now on forward new connections again."""
        self._mode = "up"

    def links(self, application: str | None = None) -> list[Link]:
        """The open connections, all of them or those a subclass named ``application``."""
        return [
            link
            for link in self._links
            if not link.closed and (application is None or link.application == application)
        ]

    @property
    def open_connections(self) -> int:
        """Client connections open through the proxy."""
        return len(self.links())

    def inspect(self, link: Link, data: bytes) -> None:
        """See a chunk the client sent before anything else does (to name the link)."""

    # -- plumbing ---------------------------------------------------------------------

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """The stream server's callback: a plain function, so that the server makes no
        task of its own; the connection runs in a task the proxy keeps and
        :meth:`close` cancels and awaits."""
        self.accepted += 1
        if self._closing:
            _reset(writer)
            return
        task = asyncio.ensure_future(self._serve(self.accepted, reader, writer))
        self._tasks[task] = writer
        task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._tasks.pop(task, None)
        if not task.cancelled() and (error := task.exception()) is not None:
            # a bug of the proxy: say so where a test sees it, as asyncio would have
            asyncio.get_running_loop().call_exception_handler(
                {"message": "fault proxy connection failed", "exception": error, "task": task}
            )

    async def _serve(
        self, number: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            if self._mode == "refuse" or len(self.links()) >= self.max_connections:
                return
            if self._mode == "blackhole":
                link = Link(number, writer, None)
                self._links = [*self.links(), link]
                try:
                    with contextlib.suppress(OSError):
                        while await reader.read(CHUNK):  # swallow, never answer
                            pass
                finally:
                    link.closed = True
                return
            try:
                upstream_reader, upstream_writer = await asyncio.open_connection(*self.upstream)
            except OSError:
                return
            if self._closing:  # connected while close() ran: it dropped the links already
                _reset(upstream_writer)
                return
            link = Link(number, writer, upstream_writer)
            self._links = [*self.links(), link]
            pipes = [
                asyncio.ensure_future(self._pipe(link, reader, upstream_writer, client=True)),
                asyncio.ensure_future(self._pipe(link, upstream_reader, writer, client=False)),
            ]
            try:
                await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for pipe in pipes:
                    pipe.cancel()
                await asyncio.gather(*pipes, return_exceptions=True)
                link.closed = True
                _reset(upstream_writer)
        finally:
            _reset(writer)

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
                if client:
                    self.inspect(link, data)
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


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST (SO_LINGER 0): the peer sees a reset, not an orderly close."""
    if writer.is_closing():
        return
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
