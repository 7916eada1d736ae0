"""The socket ``pepperpy-event serve`` listens on (``_serve.listen``)."""

from __future__ import annotations

import asyncio
import socket

import pytest

from pepperpy.event.cli._serve import listen


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
async def test_accepted_connections_send_small_writes_at_once(host: str) -> None:
    """asyncio turns Nagle's algorithm off only for sockets whose ``proto`` says TCP.

    ``socket.create_server`` makes them with proto 0, so every connection accepted on
    such a listener kept Nagle on: a keep-alive request waited for the client's delayed
    ACK (about 40 ms on Linux, against about 1 ms), and so did each small Server-Sent
    Event written after another.
    """
    if host == "::1" and not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        listener = listen(host, 0)
    except Exception as exc:  # an IPv6 loopback missing in the container
        pytest.skip(f"cannot listen on {host}: {exc}")
    accepted: asyncio.Queue[int] = asyncio.Queue()

    class Probe(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            sock = transport.get_extra_info("socket")
            accepted.put_nowait(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            transport.close()

    with listener:
        server = await asyncio.get_running_loop().create_server(Probe, sock=listener)
        async with server:
            port = listener.getsockname()[1]
            _, writer = await asyncio.open_connection(host, port)
            try:
                nodelay = await asyncio.wait_for(accepted.get(), 10)
            finally:
                writer.close()
                await writer.wait_closed()
    assert nodelay != 0, "Nagle's algorithm is on for accepted connections"
