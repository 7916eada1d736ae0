"""Closing the loopback fault proxy (tests/faultproxy.py) is quiet.

``FaultProxy.close()`` used to cancel the connection handlers asyncio's stream server had
made tasks of; one that ended cancelled (still connecting upstream, say) made the server
log ``Exception in callback StreamReaderProtocol.connection_made.<locals>.callback`` at
ERROR, three times at the end of the soak run (docs/soak.md, finding 5). These tests close
a proxy with connections in every state it knows and check that nothing was logged at
ERROR and nothing reached the loop's exception handler, against a loopback echo server
and against the PostgreSQL server.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from tests import faultproxy
from tests.faultproxy import FaultProxy
from tests.store.pgfaultproxy import PgFaultProxy, proxied

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@pytest.fixture
async def echo_port() -> AsyncIterator[int]:
    """A loopback echo server; yields its port."""

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


@pytest.fixture
async def loop_reports() -> AsyncIterator[list[str]]:
    """What reaches the running loop's exception handler (which then logs it as asyncio's
    default handler does, so that caplog sees it too)."""
    loop = asyncio.get_running_loop()
    seen: list[str] = []

    def record(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        seen.append(f"{context.get('message')}: {context.get('exception')!r}")
        loop.default_exception_handler(context)

    previous = loop.get_exception_handler()
    loop.set_exception_handler(record)
    try:
        yield seen
    finally:
        loop.set_exception_handler(previous)


async def connect(proxy: FaultProxy, count: int, *, echo: bool) -> list[Streams]:
    """``count`` client connections through ``proxy``; with ``echo``, each has carried a
    round trip (so its link is open both ways)."""
    clients = []
    for _ in range(count):
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        clients.append((reader, writer))
        if echo:
            writer.write(b"ping")
            await writer.drain()
            assert await asyncio.wait_for(reader.readexactly(4), 10) == b"ping"
    return clients


async def connecting(proxy: FaultProxy) -> list[Streams]:
    """One connection just accepted: its upstream connection is not open yet (the old
    proxy's handler was then waiting in ``open_connection``)."""
    clients = await connect(proxy, 1, echo=False)
    while proxy.accepted < 1:
        await asyncio.sleep(0)
    return clients


async def flowing(proxy: FaultProxy) -> list[Streams]:
    return await connect(proxy, 3, echo=True)


async def paused(proxy: FaultProxy) -> list[Streams]:
    """Open links, the proxy partitioned, a chunk held back on each."""
    clients = await connect(proxy, 3, echo=True)
    proxy.pause()
    for _, writer in clients:
        writer.write(b"held back")
        await writer.drain()
    return clients


async def held(proxy: FaultProxy) -> list[Streams]:
    """Links whose server side forwarded one chunk and then holds ('hold')."""
    proxy.on_server = lambda link, data: "hold"
    return await connect(proxy, 3, echo=True)


async def blackholed(proxy: FaultProxy) -> list[Streams]:
    proxy.blackhole()
    clients = await connect(proxy, 3, echo=False)
    while proxy.open_connections < 3:
        await asyncio.sleep(0.01)
    return clients


async def ended(reader: asyncio.StreamReader) -> bool:
    """Whether the proxy ended this client's connection (end of stream or a reset)."""
    try:
        await asyncio.wait_for(reader.read(), 10)
    except ConnectionError:
        return True
    return reader.at_eof()


def proxy_tasks() -> list[asyncio.Task[Any]]:
    """Tasks running code of tests/faultproxy.py."""
    return [
        task
        for task in asyncio.all_tasks()
        if not task.done()
        and getattr(task.get_coro(), "cr_code", None) is not None
        and task.get_coro().cr_code.co_filename == faultproxy.__file__  # type: ignore[union-attr]
    ]


async def collected(seen: list[str]) -> list[str]:
    """``seen`` once the callbacks of finished tasks ran and garbage was collected."""
    for _ in range(3):
        await asyncio.sleep(0.01)
        gc.collect()
    return seen


@pytest.mark.parametrize("state", [connecting, flowing, paused, held, blackholed])
async def test_closing_the_proxy_logs_nothing(
    state: Callable[[FaultProxy], Awaitable[list[Streams]]],
    echo_port: int,
    loop_reports: list[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    proxy = FaultProxy(echo_port)
    await proxy.start()
    clients = await state(proxy)
    try:
        with caplog.at_level(logging.WARNING):
            await asyncio.wait_for(proxy.close(), 10)
            assert await collected(loop_reports) == []
        assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
        assert proxy_tasks() == []
        assert proxy.open_connections == 0
        for reader, _ in clients:
            assert await ended(reader)
    finally:
        for _, writer in clients:
            writer.close()


async def test_closing_the_postgres_proxy_logs_nothing(
    postgres_server: str, loop_reports: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    """PgFaultProxy (tests/store/pgfaultproxy.py) closes as quietly, with a connection idle
    and one in the middle of a query."""
    asyncpg = pytest.importorskip("asyncpg")
    proxy = PgFaultProxy()
    await proxy.start()
    url = proxied(f"{postgres_server}/postgres", proxy.port)
    idle = await asyncpg.connect(url, server_settings={"application_name": "idle"})
    busy = await asyncpg.connect(url, server_settings={"application_name": "busy"})
    query = asyncio.ensure_future(busy.fetchval("SELECT pg_sleep(30)"))
    try:
        while not proxy.links("busy"):
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)  # the query is on its way
        with caplog.at_level(logging.WARNING):
            await asyncio.wait_for(proxy.close(), 10)
            assert await collected(loop_reports) == []
        assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
        assert proxy_tasks() == []
        with pytest.raises((ConnectionError, asyncpg.PostgresConnectionError)):
            await asyncio.wait_for(query, 10)
    finally:
        query.cancel()
        await asyncio.gather(query, return_exceptions=True)
        idle.terminate()
        busy.terminate()
