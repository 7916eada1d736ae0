"""httpcore, under httpx, logs every answer's headers at DEBUG as received, so a
redirect's ``Location`` repeating the webhook's secret (the same hook with a slash, on
``https://``, or a new token) reached the logs of anyone debugging the wire: the
channel's own errors hid it, the DEBUG record beside them did not. While a channel
sends, those headers are now shown as the channel shows a redirect."""

from __future__ import annotations

import asyncio
import logging

import pytest

from pepperpy.event import NotificationSystem, RetryPolicy, WebhookChannel
from tests.notifications.servers import HttpSink, Reply, Request

TOKEN = "xoxb1234abcdEFGH5678ijkl"
QUERY_SECRET = "s3cr3t-query-value"


def _reply(status: int, headers: str) -> Reply:
    async def reply(request: Request, writer: asyncio.StreamWriter) -> None:
        end = "Content-Length: 0\r\nConnection: close\r\n\r\n"
        writer.write(f"HTTP/1.1 {status} X\r\n{headers}{end}".encode())
        await writer.drain()

    return reply


async def _send(channel: WebhookChannel, caplog: pytest.LogCaptureFixture) -> list[str]:
    notifications = NotificationSystem(retry_policy=RetryPolicy.NONE)
    notifications.add_channel("hook", channel)
    with caplog.at_level(logging.DEBUG):
        await notifications.notify(channels=["hook"], body="b")
    await notifications.close()
    return [record.getMessage() for record in caplog.records]


@pytest.mark.parametrize("quote", ["'", '"'])  # repr(bytes) uses " for a value with a '
async def test_a_redirect_location_is_hidden_in_httpcore_debug_log(
    http_server: HttpSink, caplog: pytest.LogCaptureFixture, quote: str
) -> None:
    odd = "it's" if quote == '"' else "plain"
    location = f"/services/T0/B0/{TOKEN}/?token={QUERY_SECRET}&n={odd}"
    http_server.reply = _reply(
        308, f"Location: {location}\r\ncontent-location: https://x.example/{TOKEN}\r\n"
    )
    messages = await _send(WebhookChannel(f"{http_server.url}/services/T0/B0/{TOKEN}"), caplog)

    headers = [m for m in messages if m.startswith("receive_response_headers.complete")]
    assert headers, messages  # httpcore logged the answer's headers ...
    for message in messages:  # ... and no record shows the secrets
        assert TOKEN not in message and QUERY_SECRET not in message, message
    shown = f"{http_server.url}/services/T0/B0/***/?token=***&n=***"
    assert f"(b'Location', {shown.encode()!r})" in headers[0]
    assert "(b'content-location', b'https://x.example/***')" in headers[0]


async def test_a_labelled_channel_hides_the_location_whole(
    http_server: HttpSink, caplog: pytest.LogCaptureFixture
) -> None:
    http_server.reply = _reply(302, f"Location: {http_server.url}/in/short\r\n")
    channel = WebhookChannel(f"{http_server.url}/in/short", label="ops")
    messages = await _send(channel, caplog)
    assert any("(b'Location', b'***')" in m for m in messages), messages
    assert not any("/in/short" in m for m in messages)


async def test_other_requests_keep_their_debug_log(
    http_server: HttpSink, caplog: pytest.LogCaptureFixture
) -> None:
    """Outside a channel's send (the application's own httpx requests) nothing changes."""
    httpx = pytest.importorskip("httpx")
    http_server.reply = _reply(302, f"Location: /next/{TOKEN}\r\n")
    await _send(WebhookChannel(f"{http_server.url}/in"), caplog)  # the filter is in place
    caplog.clear()
    with caplog.at_level(logging.DEBUG):
        async with httpx.AsyncClient() as client:
            await client.get(f"{http_server.url}/mine")
    assert any(f"(b'Location', b'/next/{TOKEN}')" in r.getMessage() for r in caplog.records)
