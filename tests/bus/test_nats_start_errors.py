"""NATS: what ``start()`` says when it cannot run the bus where it was pointed.

A second stream over subjects another stream already covers (the same ``prefix=``), and
an address where something listens that does not speak NATS (another broker's port):
each error says what is wrong and what to change. The streams are the test's own,
deleted afterwards; the non-NATS servers are loopback asyncio servers of the test.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from pepperpy.event import ConfigurationError, EventBus, TransportError
from pepperpy.event.transports.nats import NatsTransport
from tests.bus.faultproxy import finishes
from tests.conftest import unique_name


@pytest.fixture
async def two_streams(nats_url: str) -> AsyncIterator[tuple[str, str, str]]:
    """Two stream names and one subject prefix of the test's own; both streams are
    deleted afterwards."""
    name = unique_name("pep_overlap")
    first, second = f"{name.upper()}_A", f"{name.upper()}_B"
    yield first, second, name
    for stream in (first, second):
        await finishes(NatsTransport(nats_url, stream=stream).delete_stream(), 15)


@pytest.mark.nats
async def test_a_second_stream_on_the_same_prefix_names_the_first_and_says_prefix(
    nats_url: str, two_streams: tuple[str, str, str]
) -> None:
    """``stream=`` alone does not make a bus of its own: both streams would want
    ``<prefix>.>``. The refusal names the stream there and says to set ``prefix=``."""
    first, second, prefix = two_streams
    async with EventBus(transport=NatsTransport(nats_url, stream=first, prefix=prefix)):
        bus = EventBus(transport=NatsTransport(nats_url, stream=second, prefix=prefix))
        with pytest.raises(ConfigurationError) as refused:
            await finishes(bus.start(), 15)
        await bus.close()
    message = str(refused.value)
    assert f"stream {first!r} (subjects [{prefix + '.>'!r}]) already covers them" in message
    assert f"use stream={first!r}" in message  # to share that bus
    assert "give each stream its own prefix=" in message  # for a bus of its own
    assert f"{nats_url}?stream={second}&prefix={second.lower()}" in message


def test_the_repr_shows_the_prefix_and_hides_the_password() -> None:
    """The prefix decides which events the transport sees: ``serve()``'s banner and
    any log that shows the transport name it."""
    transport = NatsTransport("nats://user:secret@127.0.0.1:4222?stream=ORDERS&prefix=orders")
    assert repr(transport) == "NatsTransport('nats://user:***@127.0.0.1:4222', " + (
        "stream='ORDERS', prefix='orders')"
    )


async def say_nothing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Redis, PostgreSQL, RabbitMQ: a client speaks first, so they wait in silence."""
    await reader.read()
    writer.close()


async def write_garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A server of another protocol that greets first, or answers anything with an error."""
    writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
    await writer.drain()
    await reader.read()
    writer.close()


async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A proxy whose backend is down: it accepts, then closes at once."""
    writer.close()


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.mark.parametrize(
    ("handler", "heard"),
    [
        (say_nothing, "it accepted the connection but sent nothing within"),
        (write_garbage, "it closed the connection or sent something other than an INFO line"),
        (hang_up, "it closed the connection or sent something other than an INFO line"),
    ],
)
@pytest.mark.parametrize("connect_timeout", [1.0, 2.5])  # one attempt; two, the first failed
async def test_a_server_that_does_not_speak_nats_is_named_as_such(
    handler: Handler, heard: str, connect_timeout: float
) -> None:
    """Was "within 5.0s: no answer" (or nats-py's "empty response from server when
    expecting INFO message") for ``nats://127.0.0.1:6379``, a Redis port."""
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        bus = EventBus(
            transport=NatsTransport(
                f"nats://127.0.0.1:{port}", connect_timeout=connect_timeout, reconnect_wait=0.2
            )
        )
        with pytest.raises(TransportError) as failed:
            await finishes(bus.start(), 15)
        await bus.close()
    finally:
        server.close()
        await server.wait_closed()
    message = str(failed.value)
    assert message.startswith(f"cannot connect to NATS at nats://127.0.0.1:{port} within")
    assert f"the server at 127.0.0.1:{port} did not answer the NATS handshake" in message
    assert heard in message
    assert message.endswith("is it a NATS server?")


async def test_a_closed_port_is_still_a_refused_connection() -> None:
    """Nothing listens: the connection is refused, which says all there is to say."""
    server = await asyncio.start_server(say_nothing, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    bus = EventBus(transport=NatsTransport(f"nats://127.0.0.1:{port}", connect_timeout=0.5))
    with pytest.raises(TransportError) as failed:
        await finishes(bus.start(), 15)
    await bus.close()
    assert "Connect call failed" in str(failed.value)
    assert "handshake" not in str(failed.value)


@pytest.mark.nats
async def test_a_stream_the_server_refuses_for_another_reason_is_not_blamed_on_an_overlap(
    nats_url: str, two_streams: tuple[str, str, str]
) -> None:
    """``replicas=3`` on a single server: JetStream's reason alone, not "(does another
    stream cover them already?)", which sent the reader looking for a stream that is
    not there."""
    first, _, prefix = two_streams
    bus = EventBus(transport=NatsTransport(nats_url, stream=first, prefix=prefix, replicas=3))
    with pytest.raises(ConfigurationError) as refused:
        await finishes(bus.start(), 15)
    await bus.close()
    message = str(refused.value)
    assert "replicas > 1 not supported in non-clustered mode" in message
    assert "another stream" not in message
