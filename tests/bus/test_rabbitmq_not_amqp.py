"""RabbitMQ: a URL pointing at a server that does not speak AMQP says so.

``amqp://...@127.0.0.1:6379/`` (the Redis port) ended after ``connect_timeout`` with
``cannot connect to RabbitMQ at ...: TimeoutError()``; a server that answered bytes that
are not AMQP and hung up was retried for the whole ``connect_timeout`` and reported as
``Server connection unexpectedly closed. Read 15 bytes but 1377858927 bytes expected``
(audit 3 finding 12). Both now say ``the server at host:port did not answer the AMQP
handshake (is it RabbitMQ?)``, and the second fails at once. The servers are tiny
asyncio servers on loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from pepperpy.event import TransportError
from pepperpy.event.transports.rabbitmq import RabbitMQTransport
from tests.bus.faultproxy import finishes


@contextlib.asynccontextmanager
async def server(answer: bytes, *, hang_up: bool) -> AsyncIterator[tuple[int, list[bytes]]]:
    """A loopback server that reads what a client sends first, answers ``answer`` and
    then hangs up or says nothing more; yields its port and what it read per connection."""
    heard: list[bytes] = []
    writers: list[asyncio.StreamWriter] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        heard.append(await reader.read(8))
        writer.write(answer)
        with contextlib.suppress(OSError):
            await writer.drain()
        if hang_up:
            writer.close()

    listening = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield listening.sockets[0].getsockname()[1], heard
    finally:
        listening.close()
        for writer in writers:
            writer.transport.abort()
        await listening.wait_closed()


def transport(port: int, connect_timeout: float) -> RabbitMQTransport:
    return RabbitMQTransport(
        f"amqp://guest:secret@127.0.0.1:{port}/",
        connect_timeout=connect_timeout,
        reconnect_interval=0.1,
    )


@pytest.mark.parametrize("answer", [b"", b"-ERR unknown command 'AMQP'\r\n"])
async def test_a_server_that_sends_no_amqp_frame_is_named(answer: bytes) -> None:
    """Silent, or an answer and then nothing more (Redis answers nothing to an AMQP
    header: it waits for the end of the line)."""
    async with server(answer, hang_up=False) as (port, heard):
        with pytest.raises(TransportError) as caught:
            await finishes(transport(port, 1.0).start(), 10)
    assert heard and heard[0].startswith(b"AMQP")  # it did connect, and said AMQP
    assert str(caught.value) == (
        f"cannot connect to RabbitMQ at amqp://guest:***@127.0.0.1:{port}/: the server at"
        f" 127.0.0.1:{port} did not answer the AMQP handshake (is it RabbitMQ?); it"
        f" accepted the connection but sent no AMQP frame in 1.0s"
    )
    assert isinstance(caught.value.__cause__, TimeoutError)


@pytest.mark.parametrize(
    "answer",
    [b"-ERR unknown command\r\n", b"HTTP/1.1 400 Bad Request\r\n\r\n", b"AMQP\x01\x01\x00\x0a"],
)
async def test_a_server_that_answers_another_protocol_is_named_at_once(answer: bytes) -> None:
    async with server(answer, hang_up=True) as (port, heard):
        with pytest.raises(TransportError) as caught:
            await finishes(transport(port, 30.0).start(), 10)  # not retried for 30 s
    assert len(heard) == 1  # not tried again: it will not become RabbitMQ
    message = str(caught.value)
    assert message.startswith(
        f"cannot connect to RabbitMQ at amqp://guest:***@127.0.0.1:{port}/: the server at"
        f" 127.0.0.1:{port} did not answer the AMQP handshake (is it RabbitMQ?); it"
        " answered with bytes that are not AMQP 0-9-1 ("
    )


async def test_a_server_that_hangs_up_without_a_word_is_tried_again() -> None:
    """Accepted and closed at once, as a broker starting up or a proxy with nothing
    behind it may do: that may come up, and keeps the driver's words."""
    async with server(b"", hang_up=True) as (port, heard):
        with pytest.raises(TransportError) as caught:
            await finishes(transport(port, 1.0).start(), 10)
    assert len(heard) >= 2
    assert "did not answer the AMQP handshake" not in str(caught.value)
    assert "connect_timeout is 1s" in str(caught.value)


async def test_a_port_nothing_listens_on_keeps_its_message() -> None:
    async with server(b"", hang_up=True) as (port, _):
        pass  # closed: nothing listens there now
    with pytest.raises(TransportError) as caught:
        await finishes(transport(port, 0.5).start(), 10)
    assert "Connect call failed" in str(caught.value)
    assert "AMQP handshake" not in str(caught.value)
