"""Header names are case-insensitive: a configured header replaces the channel's own.

``headers={"content-type": ...}`` was sent beside the channel's ``Content-Type``, so the
receiver got two (likewise ``User-Agent`` and ``Idempotency-Key``), and a configured
``x-pepperpy-signature`` went out beside the real signature. The server here records
the request's header lines as they came, duplicates included.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from pepperpy.event import ConfigurationError, NotificationSystem, RetryPolicy, WebhookChannel


class RawSink:
    """An HTTP server on loopback keeping each request's header lines as sent."""

    def __init__(self) -> None:
        self.heads: list[list[tuple[str, str]]] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/hook"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            lines = [line.partition(":") for line in head.split("\r\n")[1:] if line]
            headers = [(name.strip().lower(), value.strip()) for name, _, value in lines]
            self.heads.append(headers)
            length = sum(int(value) for name, value in headers if name == "content-length")
            await reader.readexactly(length)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            await writer.drain()
        finally:
            writer.close()


@pytest.fixture
async def sink() -> AsyncIterator[RawSink]:
    server = RawSink()
    yield server
    if server.server is not None:
        server.server.close()
        await server.server.wait_closed()


async def test_configured_headers_replace_the_channels_own_whatever_their_case(
    sink: RawSink,
) -> None:
    url = await sink.start()
    configured = {
        "content-type": "application/cloudevents+json",
        "user-agent": "shop/2.1",
        "IDEMPOTENCY-KEY": "order-42",
    }
    notifications = NotificationSystem(retry_policy=RetryPolicy.NONE)
    notifications.add_channel("hook", WebhookChannel(url, secret="s3cret", headers=configured))
    try:
        result = await notifications.notify(channels=["hook"], body="b")
    finally:
        await notifications.close()

    assert result.ok, result["hook"].error
    [head] = sink.heads
    names = [name for name, _ in head]
    assert sorted(names) == sorted(set(names)), f"a header sent twice: {names}"
    sent = dict(head)
    assert sent["content-type"] == "application/cloudevents+json"
    assert sent["user-agent"] == "shop/2.1"
    assert sent["idempotency-key"] == "order-42"
    assert sent["x-pepperpy-signature"].startswith("sha256=")


@pytest.mark.parametrize(
    ("headers", "secret", "problem"),
    [
        ({"x-pepperpy-signature": "sha256=00"}, "s3cret", "it signs each request"),
        ({"X-Pepperpy-Timestamp": "1"}, "s3cret", "it signs each request"),
        ({"X-Team": "ops", "x-team": "on-call"}, None, "given twice"),
    ],
)
def test_headers_that_would_be_sent_twice_are_refused(
    headers: dict[str, str], secret: str | None, problem: str
) -> None:
    with pytest.raises(ConfigurationError, match=problem):
        WebhookChannel("http://127.0.0.1:9/hook", secret=secret, headers=headers)


def test_an_unsigned_channel_may_send_a_header_of_that_name() -> None:
    channel = WebhookChannel("http://127.0.0.1:9/hook", headers={"X-Pepperpy-Signature": "v1"})

    assert channel.headers == {"X-Pepperpy-Signature": "v1"}
