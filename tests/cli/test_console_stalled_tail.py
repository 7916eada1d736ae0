"""A live tail whose client stopped reading does not hold up the server's stop.

A tail ends by itself at a stop, unless a write is waiting for a client that reads no
more (a suspended laptop, a stuck proxy): the stop then waited for uvicorn's graceful
timeout (10 s under ``serve``; forever without one), which cancelled the tail and logged
"Exception in ASGI application" with a traceback.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from pepperpy.event import Event, EventStore
from pepperpy.event.cli._console import console_app

from .conftest import command_env

#: a backlog far larger than the sockets' buffers: its writes wait for the client. Events
#: of 16 MB: each was one write, which a stop could not cut off (uvicorn kept the rest of
#: it for the client, and the server never stopped); now written 64 KiB at a time. (A
#: backlog holds no more than 4 MiB unless its newest event alone is larger, and 4 MiB of
#: small events can fit in a loopback connection's buffers: then nothing would wait.)
EVENTS, SIZE = 2, 16_000_000


@pytest.fixture
def stalled() -> Iterator[list[socket.socket]]:
    """The clients' sockets, closed at the end of the test."""
    sockets: list[socket.socket] = []
    yield sockets
    for sock in sockets:
        sock.close()


def _stall(port: int, sockets: list[socket.socket]) -> None:
    """Ask for a tail of the whole backlog, read the start of the answer, read no more.

    Blocking, in a thread: the client is another party, as a browser is."""
    sock = socket.socket()
    sockets.append(sock)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(30)
    sock.connect(("127.0.0.1", port))
    sock.sendall(b"GET /api/tail?lines=1000 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert sock.recv(12).startswith(b"HTTP/1.1 200")


async def _fill(path: Path) -> None:
    async with EventStore(f"sqlite:///{path}") as store:
        events = [Event("t.x", {"text": "x" * SIZE, "n": n}) for n in range(EVENTS)]
        await store.append("s.1", events)


async def test_a_stop_ends_a_tail_whose_client_reads_no_more(
    tmp_path: Path, stalled: list[socket.socket]
) -> None:
    await _fill(tmp_path / "events.db")
    async with EventStore(f"sqlite:///{tmp_path}/events.db") as store:
        stopping = asyncio.Event()
        config = uvicorn.Config(
            console_app(store, stopping=stopping),
            host="127.0.0.1",
            port=0,
            log_level="critical",
            lifespan="off",
            timeout_graceful_shutdown=None,  # waits for every request, however long
        )
        server = uvicorn.Server(config)
        serving = asyncio.create_task(server.serve())
        while not server.started:
            assert not serving.done(), "the server did not start"
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        await asyncio.to_thread(_stall, port, stalled)
        stopping.set()
        server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(serving), 60)
        finally:
            if not serving.done():
                server.force_exit = True
                for sock in stalled:
                    sock.close()  # the writes fail: the tail ends, so does the server
                await serving


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
async def test_serve_stops_at_once_and_quietly_with_a_stalled_tail(
    tmp_path: Path, stalled: list[socket.socket], signum: signal.Signals
) -> None:
    await _fill(tmp_path / "events.db")
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "pepperpy.event", "serve", "--port", "0"),
        *("--store", f"sqlite:///{tmp_path}/events.db"),
        cwd=tmp_path,
        env=command_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    try:
        banner = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
        assert banner.startswith("pepperpy-event console on http://127.0.0.1:"), banner
        port = int(banner.split()[3].rstrip("/").rsplit(":", 1)[1])
        await asyncio.to_thread(_stall, port, stalled)
        process.send_signal(signum)
        code = await asyncio.wait_for(process.wait(), 60)
        err = (await process.stderr.read()).decode()
        # uvicorn's graceful timeout (10 s) was not waited out: it would have logged
        assert (code, err) == (0, "stopped\n")
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
