"""Live tails whose client went away: nothing more is written to the dead connection.

The backlog of a tail (up to 1,000 events) was sent one write per event without giving
the event loop a turn, so a client that had gone (a closed tab, a script's timeout) was
noticed only after all of them: asyncio logged "socket.send() raised exception." on the
server's stderr for the writes after the failure, once per such client.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import uvicorn

from pepperpy.event import Event, EventStore
from pepperpy.event.cli._console import console_app


@pytest.fixture
async def port(tmp_path: Path) -> AsyncIterator[int]:
    async with EventStore(f"sqlite:///{tmp_path}/events.db") as store:
        await store.append(
            "s.1", [Event("t.x", {"text": "x" * 2_000, "n": n}) for n in range(1_000)]
        )
        config = uvicorn.Config(
            console_app(store), host="127.0.0.1", port=0, log_level="error", lifespan="off"
        )
        config.timeout_graceful_shutdown = 1
        server = uvicorn.Server(config)
        serving = asyncio.create_task(server.serve())
        while not server.started:
            assert not serving.done(), "the server did not start"
            await asyncio.sleep(0.01)
        yield server.servers[0].sockets[0].getsockname()[1]
        server.should_exit = True
        await store.close()  # ends open tails so the server can stop
        await serving


def _leave_early(port: int, reset: bool) -> None:
    """Ask for a tail of 1,000 events, read the start of the answer, then close the
    connection (``reset``: reset it).

    Blocking, in a thread: the client must go while the server (on the test's event
    loop) is still writing, as a browser in another process does.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /api/tail?lines=1000 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        sock.recv(10)  # the answer has begun
        if reset:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


async def test_a_client_that_leaves_mid_backlog_is_not_written_to(
    port: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="asyncio")
    for n in range(20):
        await asyncio.to_thread(_leave_early, port, n % 2 == 1)
    await asyncio.sleep(1)
    writes = [r for r in caplog.records if "socket.send() raised exception" in r.getMessage()]
    assert writes == []
