"""A TCP proxy on loopback that injects network faults between a client and a broker.

Tests point a transport at the proxy instead of the broker, then break the network the
way real networks break, per connection and without touching the shared broker:

* ``pause()`` / ``resume()``: a partition. Connections stay open but no byte moves in
  either direction (each direction holds at most one read chunk meanwhile, so memory
  stays bounded); the client sees a silent peer, not an error.
* ``drop()``: every open connection is reset (RST), as when a broker or a NAT box dies.
  New connections are accepted normally unless the mode says otherwise.
* ``refuse()``: new connections are accepted and reset at once (a broker that is down).
* ``blackhole()``: new connections are accepted and then never answered.
* ``heal()``: new connections are forwarded again.

Only loopback: it listens on 127.0.0.1 and forwards to a loopback address. At most
``max_connections`` are open at once (more are reset). ``async with FaultProxy(port) as
proxy`` starts it and, on exit, resets every connection and waits for its tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import struct
import time
from collections.abc import Awaitable, Coroutine
from types import TracebackType
from typing import Any

__all__ = ["FaultProxy", "finishes", "tasks_left"]

CHUNK = 65536


class FaultProxy:
    """Forwards 127.0.0.1:<port> to a broker on loopback, with faults on demand."""

    def __init__(
        self, upstream_port: int, *, upstream_host: str = "127.0.0.1", max_connections: int = 64
    ) -> None:
        if not ipaddress.ip_address(upstream_host).is_loopback:
            raise ValueError(f"the fault proxy only forwards to loopback, not {upstream_host}")
        self.upstream = (upstream_host, upstream_port)
        self.max_connections = max_connections
        self.port = 0
        #: connections accepted so far (connection attempts, whatever the mode)
        self.accepted = 0
        self._mode = "up"  # up | refuse | blackhole
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    # -- lifecycle --------------------------------------------------------------------

    async def start(self) -> int:
        """Listen on a free loopback port; returns it (also in ``self.port``)."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def close(self) -> None:
        """Stop listening, reset every connection, and wait for the proxy's tasks."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        self._flowing.set()
        self.drop()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def __aenter__(self) -> FaultProxy:
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
        """Stop forwarding in both directions; connections stay open (a partition)."""
        self._flowing.clear()

    def resume(self) -> None:
        """Forward again what a pause held back, and everything after it."""
        self._flowing.set()

    def drop(self) -> int:
        """Reset every open connection; returns how many sockets were reset."""
        writers, self._writers = self._writers, set()
        for writer in writers:
            _reset(writer)
        return len(writers)

    def refuse(self) -> None:
        """From now on accept new connections only to reset them (a broker that is down)."""
        self._mode = "refuse"

    def blackhole(self) -> None:
        """From now on accept new connections and never answer them."""
        self._mode = "blackhole"

    def heal(self) -> None:
        """From now on forward new connections again."""
        self._mode = "up"

    @property
    def open_connections(self) -> int:
        """Client connections open through the proxy (a forwarded one counts its two ends)."""
        return len(self._writers)

    # -- plumbing ---------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.accepted += 1
        try:
            if self._mode == "refuse" or len(self._writers) >= 2 * self.max_connections:
                _reset(writer)
                return
            self._writers.add(writer)
            if self._mode == "blackhole":
                with contextlib.suppress(OSError):
                    while await reader.read(CHUNK):  # swallow, never answer
                        pass
                return
            try:
                upstream_reader, upstream_writer = await asyncio.open_connection(*self.upstream)
            except OSError:
                return
            self._writers.add(upstream_writer)
            try:
                await _first_to_finish(
                    self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer)
                )
            finally:
                self._writers.discard(upstream_writer)
                _close(upstream_writer)
        finally:
            self._writers.discard(writer)
            _close(writer)
            self._tasks.discard(task)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(CHUNK):
                await self._flowing.wait()
                if writer.is_closing():
                    return
                writer.write(data)
                await writer.drain()


async def _first_to_finish(*pipes: Coroutine[Any, Any, None]) -> None:
    """Run both directions; when one ends (EOF or reset), stop the other."""
    tasks = [asyncio.get_running_loop().create_task(pipe) for pipe in pipes]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def finishes(operation: Awaitable[Any], within: float) -> float:
    """Await ``operation``; return how long it took, failing the test (rather than hanging
    or cancelling it) if it takes longer than ``within`` seconds or raises
    ``CancelledError`` without having been cancelled. Its other exceptions propagate."""
    task = asyncio.ensure_future(operation)
    started = time.monotonic()
    done, _ = await asyncio.wait([task], timeout=within)
    if not done:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        raise AssertionError(f"still running after {within}s")
    if task.cancelled():
        raise AssertionError("raised CancelledError although nobody cancelled it")
    task.result()
    return time.monotonic() - started


def tasks_left(before: set[asyncio.Task[Any]]) -> list[str]:
    """Tasks running now that did not before, other than the current one and the proxy's."""
    current = asyncio.current_task()
    left = []
    for task in asyncio.all_tasks() - before:
        code = getattr(task.get_coro(), "cr_code", None)
        if task is current or task.done() or (code and code.co_filename == __file__):
            continue
        left.append(repr(task))
    return left


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST (SO_LINGER 0): the peer sees a reset, not an orderly close."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def _close(writer: asyncio.StreamWriter) -> None:
    if not writer.is_closing():
        writer.transport.abort()
