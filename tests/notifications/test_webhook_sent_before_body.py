"""A webhook that answered 2xx got the message: a close() that cut the try off while its
body was still coming reported a ClosedError and gave the idempotency key back, so a
redelivery posted it again."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pepperpy.event import NotificationSystem, RetryPolicy
from pepperpy.event.notifications import MemoryIdempotencyStore
from tests.notifications.servers import HttpSink, Request


def _stall_after_the_status(sink: HttpSink, answered: asyncio.Event, ended: asyncio.Event) -> None:
    """The first request gets its 200 and the start of a body that then stalls (until
    the test has ``ended``); the others a whole answer."""

    async def reply(request: Request, writer: asyncio.StreamWriter) -> None:
        if len(sink.requests) == 1:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nok")
            await writer.drain()
            answered.set()
            await ended.wait()
            return
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()

    sink.reply = reply


def _system(url: str, store: MemoryIdempotencyStore) -> NotificationSystem:
    notifications = NotificationSystem(
        retry_policy=RetryPolicy.fixed(max_attempts=3, base_delay=0.0), idempotency=store
    )
    notifications.add_channel("hooks", url)
    return notifications


async def _cut(notifications: NotificationSystem, pending: asyncio.Future[Any], how: str) -> None:
    """Cut the try off as ``how`` says: close() past its grace, or cancel the call."""
    if how == "close":
        await notifications.close(grace=0.2)
        result = (await asyncio.wait_for(pending, 10))["hooks"]
        assert result.status == "sent", result.error
        assert result.attempts == 1
    else:
        pending.cancel()
        with pytest.raises(asyncio.CancelledError):
            await pending
        await notifications.close()


@pytest.mark.parametrize("how", ["close", "cancel"])
async def test_a_2xx_cut_off_while_its_body_came_is_a_delivery(
    http_server: HttpSink, how: str
) -> None:
    answered, ended = asyncio.Event(), asyncio.Event()
    _stall_after_the_status(http_server, answered, ended)
    store = MemoryIdempotencyStore()
    notifications = _system(http_server.url, store)
    pending = asyncio.ensure_future(notifications.notify(body="b", idempotency_key="k"))
    await asyncio.wait_for(answered.wait(), 10)
    await asyncio.sleep(0.3)  # the status line reaches the client
    try:
        await _cut(notifications, pending, how)
    finally:
        ended.set()

    # a redelivery (another system sharing the store) finds it delivered: posted once
    again = _system(http_server.url, store)
    second = await again.notify(body="b", idempotency_key="k")
    await again.close()
    assert second["hooks"].status == "duplicate"
    assert len(http_server.requests) == 1
