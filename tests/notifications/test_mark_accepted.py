"""A custom channel says "the receiver accepted it" with ``Channel.mark_accepted()``: a
failure after that (ending the session, a cut-off) is a delivery, not retried, not
dead-lettered, its idempotency key kept. Only the built-in channels could say it
(``_mark_sent`` was private), so a custom channel's message was sent again.

The channel below speaks HTTP itself, on asyncio streams, to a real server on loopback.
"""

from __future__ import annotations

import asyncio

from pepperpy.event import (
    Channel,
    MemoryIdempotencyStore,
    Notification,
    NotificationError,
    NotificationSystem,
    RetryPolicy,
)
from tests.notifications.servers import HttpSink

THREE_TRIES = RetryPolicy.fixed(max_attempts=3, base_delay=0.0)


class RawHttpChannel(Channel):
    """POSTs the body, reads the status line, then fails as if the connection broke
    while the session ended; ``accepts`` says whether it calls ``mark_accepted``."""

    needs_recipient = False

    def __init__(self, port: int, *, accepts: bool) -> None:
        self.port = port
        self.accepts = accepts

    async def send(self, notification: Notification) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            body = notification.body.encode()
            writer.write(
                f"POST /in HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            await writer.drain()
            status = (await reader.readline()).split()[1]
            if status.startswith(b"2") and self.accepts:
                self.mark_accepted()  # the receiver has it
            raise NotificationError("the connection broke while the session ended")
        finally:
            writer.close()


async def test_a_failure_after_mark_accepted_is_a_delivery(http_server: HttpSink) -> None:
    store = MemoryIdempotencyStore()
    notifications = NotificationSystem(retry_policy=THREE_TRIES, idempotency=store)
    notifications.add_channel("raw", RawHttpChannel(http_server.port, accepts=True))

    first = await notifications.notify(body="order 42", idempotency_key="order-42")
    again = await notifications.notify(body="order 42", idempotency_key="order-42")
    await notifications.close()

    assert first["raw"].status == "sent" and first["raw"].attempts == 1
    assert first["raw"].error is None
    assert again["raw"].status == "duplicate"  # the key was kept
    assert [request.body for request in http_server.requests] == [b"order 42"]  # sent once
    assert list(notifications.dead_letters) == []


async def test_without_mark_accepted_the_same_failure_is_retried(http_server: HttpSink) -> None:
    notifications = NotificationSystem(retry_policy=THREE_TRIES)
    notifications.add_channel("raw", RawHttpChannel(http_server.port, accepts=False))

    result = await notifications.notify(body="order 42")
    await notifications.close()

    assert result["raw"].status == "failed" and result["raw"].attempts == 3
    assert len(http_server.requests) == 3
    assert len(notifications.dead_letters) == 1


async def test_a_refused_message_is_not_accepted(http_server: HttpSink) -> None:
    http_server.answer([503, 200])
    notifications = NotificationSystem(retry_policy=THREE_TRIES)
    notifications.add_channel("raw", RawHttpChannel(http_server.port, accepts=True))

    result = await notifications.notify(body="order 42")
    await notifications.close()

    assert result["raw"].status == "sent" and result["raw"].attempts == 2
    assert len(http_server.requests) == 2


def test_mark_accepted_outside_a_delivery_does_nothing() -> None:
    RawHttpChannel(1, accepts=True).mark_accepted()
