"""What a bus's ``start()`` says when it cannot start, and a loopback server to point it at."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from pepperpy.event import EventBus, TransportError
from pepperpy.event.transports import Transport
from tests.bus.faultproxy import finishes


async def start_failure(transport: Transport) -> str:
    """What ``start()`` raised (a ``TransportError``), well before ``connect_timeout``."""
    bus = EventBus(transport=transport)
    try:
        with pytest.raises(TransportError) as raised:
            await finishes(bus.start(), 20)
    finally:
        await bus.close()
    return str(raised.value)


@asynccontextmanager
async def greeting_server(greeting: bytes) -> AsyncIterator[int]:
    """A loopback server that sends ``greeting`` on every connection, then waits for the
    client to go; gives its port, and is closed afterwards."""

    async def greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(greeting)
        await writer.drain()
        await reader.read()
        writer.close()

    server = await asyncio.start_server(greet, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()
