"""Webhooks to a real local HTTP server: JSON body, HMAC signature, retries, dead letters."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from pepperpy.event import (
    ConfigurationError,
    NotificationError,
    NotificationSystem,
    RetryPolicy,
    WebhookChannel,
)
from tests.notifications.servers import HttpSink, Reply, Request, free_port

SECRET = "s3cret-key"
FAST_RETRY = RetryPolicy.fixed(max_attempts=3, base_delay=0.0)


def _system(url: str, **options: object) -> NotificationSystem:
    notifications = NotificationSystem(retry_policy=FAST_RETRY)
    notifications.add_channel("hooks", WebhookChannel(url, **options))  # type: ignore[arg-type]
    notifications.add_template("order", "Order {{ order.id }} shipped", subject="Shipped")
    return notifications


async def test_webhook_posts_signed_json(http_server: HttpSink) -> None:
    notifications = _system(http_server.url + "/hook", secret=SECRET)

    result = await notifications.notify(channels=["hooks"], template="order", order={"id": 7})

    assert result.ok, result.failed
    [request] = http_server.requests
    assert request.method == "POST" and request.path == "/hook"
    assert request.headers["content-type"] == "application/json"
    payload = json.loads(request.body)
    assert payload["body"] == "Order 7 shipped"
    assert payload["subject"] == "Shipped"
    assert payload["channel"] == "hooks" and payload["template"] == "order"
    assert payload["id"] == result["hooks"].notification.id  # type: ignore[union-attr]
    timestamp = request.headers["x-pepperpy-timestamp"]
    signature = request.headers["x-pepperpy-signature"]
    assert abs(int(timestamp) - time.time()) < 60
    assert WebhookChannel.verify_signature(SECRET, request.body, timestamp, signature)
    assert not WebhookChannel.verify_signature("wrong", request.body, timestamp, signature)
    assert not WebhookChannel.verify_signature(SECRET, request.body + b" ", timestamp, signature)
    assert not WebhookChannel.verify_signature(
        SECRET, request.body, timestamp, signature, now=int(timestamp) + 3600
    )


@pytest.mark.parametrize(
    ("timestamp", "signature"),
    [
        (None, "sha256=\u00e9"),  # the timestamp header as received (filled in below)
        (None, "sha256=" + "\u00e9" * 64),
        (None, "\udcff"),
        (None, ""),
        ("\u00e9", "sha256=00"),
        ("12 34", "sha256=00"),
    ],
)
async def test_malformed_signature_headers_are_false_not_errors(
    http_server: HttpSink, timestamp: str | None, signature: str
) -> None:
    notifications = _system(http_server.url, secret=SECRET)
    assert (await notifications.notify(channels=["hooks"], body="ping")).ok
    [request] = http_server.requests
    sent_at = timestamp if timestamp is not None else request.headers["x-pepperpy-timestamp"]

    assert WebhookChannel.verify_signature(SECRET, request.body, sent_at, signature) is False


async def test_unsigned_webhook_has_no_signature(http_server: HttpSink) -> None:
    notifications = _system(http_server.url, headers={"Authorization": "Bearer t"})

    result = await notifications.notify(channels=["hooks"], body="ping")

    assert result.ok
    headers = http_server.requests[0].headers
    assert "x-pepperpy-signature" not in headers
    assert headers["authorization"] == "Bearer t"


async def test_server_error_is_retried_then_dead_lettered(http_server: HttpSink) -> None:
    http_server.answer([500])
    notifications = _system(http_server.url, secret=SECRET)
    letters: list[object] = []
    notifications.on_error(letters.append)

    result = await notifications.notify(channels=["hooks"], template="order", order={"id": 1})

    failure = result["hooks"]
    assert failure.status == "failed" and failure.attempts == 3
    assert isinstance(failure.error, NotificationError)
    assert "500" in str(failure.error)
    assert len(http_server.requests) == 3
    # every try carries the same idempotency key, so the receiver can drop duplicates
    keys = {r.headers["idempotency-key"] for r in http_server.requests}
    assert len(keys) == 1
    [letter] = notifications.dead_letters
    assert letters == [letter]
    assert letter.channel == "hooks" and letter.attempts == 3
    assert "500" in letter.reason


async def test_transient_failure_then_success(http_server: HttpSink) -> None:
    http_server.answer([503, 429, 200])
    notifications = _system(http_server.url)

    result = await notifications.notify(channels=["hooks"], body="x")

    assert result.ok and result["hooks"].attempts == 3
    assert not notifications.dead_letters


async def test_client_error_is_permanent(http_server: HttpSink) -> None:
    http_server.answer([404])
    notifications = _system(http_server.url)

    result = await notifications.notify(channels=["hooks"], body="x")

    assert result["hooks"].attempts == 1
    assert len(http_server.requests) == 1


async def test_connection_refused_is_a_notification_error() -> None:
    notifications = _system(f"http://127.0.0.1:{free_port()}/", timeout=2.0)

    result = await notifications.notify(channels=["hooks"], body="x")

    error = result["hooks"].error
    assert isinstance(error, NotificationError)
    assert error.__cause__ is not None  # the httpx error, kept as the cause
    assert result["hooks"].attempts == 3


async def test_webhook_from_url_and_close(http_server: HttpSink) -> None:
    async with NotificationSystem() as notifications:
        channel = notifications.add_channel("audit", http_server.url + "/audit")
        assert isinstance(channel, WebhookChannel)
        result = await notifications.notify(channels=["audit"], body="hello")
    assert result.ok
    assert http_server.requests[0].path == "/audit"


def test_webhook_rejects_non_http_urls() -> None:
    with pytest.raises(ConfigurationError):
        WebhookChannel("ftp://example.com")
    with pytest.raises(ConfigurationError):
        WebhookChannel("https://example.com", timeout=0)


@pytest.mark.parametrize(
    "timestamp",
    [
        "9" * 400,
        "-" + "9" * 400,
        "9" * 16,
        "1e9",
        " 1700000000",
        "+1700000000",
        "\u0661\u0662\u0663",
    ],
)
def test_a_timestamp_that_is_not_a_few_ascii_digits_is_false_not_an_error(timestamp: str) -> None:
    # a 400-digit timestamp used to raise OverflowError (int too large for a float)
    body = b'{"body": "x"}'
    signature = WebhookChannel.sign(SECRET, body, timestamp)

    assert WebhookChannel.verify_signature(SECRET, body, timestamp, signature) is False


async def test_retry_on_connection_error_matches_a_refused_webhook() -> None:
    # httpx's ConnectError is no ConnectionError, so retry_on=ConnectionError used to
    # give up after one try on webhooks while it retried email; the cause is now builtin
    import httpx

    url = f"http://127.0.0.1:{free_port()}/"
    for retry_on in (ConnectionError, httpx.ConnectError):
        policy = RetryPolicy.fixed(max_attempts=3, base_delay=0.0, retry_on=retry_on)
        notifications = NotificationSystem(retry_policy=policy)
        notifications.add_channel("hooks", WebhookChannel(url, timeout=2.0))

        result = (await notifications.notify(channels=["hooks"], body="x"))["hooks"]
        await notifications.close()

        assert result.attempts == 3, retry_on
        cause = result.error.__cause__ if result.error is not None else None
        assert isinstance(cause, ConnectionError)
        assert isinstance(cause.__cause__, httpx.ConnectError)  # httpx's error stays reachable


async def _never_answer(request: Request, writer: asyncio.StreamWriter) -> None:
    await asyncio.sleep(30)


def _trickle(status: int) -> Reply:
    """Answer ``status`` at once, then one byte of a 100-byte body every 0.2 s (20 s in all)."""

    async def reply(request: Request, writer: asyncio.StreamWriter) -> None:
        head = f"HTTP/1.1 {status} X\r\nContent-Length: 100\r\nConnection: close\r\n\r\n"
        writer.write(head.encode())
        for _ in range(100):
            await writer.drain()
            await asyncio.sleep(0.2)
            writer.write(b"x")

    return reply


async def test_timeout_bounds_the_whole_request_not_each_read(http_server: HttpSink) -> None:
    # httpx's timeout applies to each read: a receiver trickling its answer kept one try
    # alive for as long as it liked (20 s here); the whole request is now bounded
    http_server.reply = _trickle(503)
    policy = RetryPolicy.fixed(max_attempts=2, base_delay=0.0)
    notifications = NotificationSystem(retry_policy=policy)
    notifications.add_channel("hooks", WebhookChannel(http_server.url, timeout=0.5))
    started = time.monotonic()

    result = (await asyncio.wait_for(notifications.notify(body="x"), 15))["hooks"]
    elapsed = time.monotonic() - started
    await notifications.close()

    # the status came in time, so it is the answer: a 503, retried, its body's start quoted
    assert result.status == "failed" and result.attempts == 2
    assert isinstance(result.error, NotificationError)
    assert "answered 503: 'x" in str(result.error)
    assert len(http_server.requests) == 2
    assert elapsed < 8  # two tries of 0.5 s each, with a wide margin for a loaded machine


async def test_a_2xx_whose_body_stalls_is_a_delivery_not_retried(http_server: HttpSink) -> None:
    # the receiver accepted the message (200); its body stalling past the timeout made
    # the try fail, and the retry posted the message a second time
    http_server.reply = _trickle(200)
    notifications = NotificationSystem(retry_policy=RetryPolicy.fixed(max_attempts=3))
    notifications.add_channel("hooks", WebhookChannel(http_server.url, timeout=0.5))
    started = time.monotonic()

    result = (await asyncio.wait_for(notifications.notify(body="x"), 15))["hooks"]
    elapsed = time.monotonic() - started
    await notifications.close()

    assert result.status == "sent", result.error
    assert result.attempts == 1
    assert len(http_server.requests) == 1
    assert elapsed < 8  # bounded by the timeout all the same (0.5 s), with a wide margin


async def test_a_2xx_whose_connection_breaks_off_is_a_delivery(http_server: HttpSink) -> None:
    async def cut(request: Request, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\nxx")
        await writer.drain()
        writer.transport.abort()  # 98 bytes short

    http_server.reply = cut
    notifications = NotificationSystem(retry_policy=RetryPolicy.fixed(max_attempts=3))
    notifications.add_channel("hooks", WebhookChannel(http_server.url))

    result = (await notifications.notify(body="x"))["hooks"]
    await notifications.close()

    assert result.status == "sent", result.error
    assert len(http_server.requests) == 1


async def test_a_silent_receiver_times_out_with_a_builtin_timeout_error(
    http_server: HttpSink,
) -> None:
    http_server.reply = _never_answer
    notifications = _system(http_server.url, timeout=0.3)
    notifications.retry_policy = RetryPolicy.NONE

    result = (await notifications.notify(channels=["hooks"], body="x"))["hooks"]
    await notifications.close()

    assert result.status == "failed" and isinstance(result.error, NotificationError)
    assert isinstance(result.error.__cause__, TimeoutError)


def _huge(written: list[int], status: int = 200, size: int = 100 * 2**20) -> Reply:
    async def reply(request: Request, writer: asyncio.StreamWriter) -> None:
        writer.write(f"HTTP/1.1 {status} X\r\nContent-Length: {size}\r\n\r\n".encode())
        chunk = b"x" * 2**16
        try:
            for _ in range(size // len(chunk)):
                writer.write(chunk)
                await asyncio.wait_for(writer.drain(), 5)  # the client stopped reading
                written[0] += len(chunk)
        except (ConnectionError, TimeoutError):
            pass

    return reply


async def test_a_huge_answer_is_not_read_into_memory(http_server: HttpSink) -> None:
    # the whole body used to be read (and kept) although nothing uses it: a receiver
    # answering 300 MB made the sender hold 300 MB
    written = [0]
    http_server.reply = _huge(written)
    notifications = _system(http_server.url)

    result = await asyncio.wait_for(notifications.notify(channels=["hooks"], body="x"), 30)
    await notifications.close()

    assert result.ok, result.failed
    assert written[0] < 32 * 2**20  # what socket buffers hold, not the 100 MB offered


async def test_an_error_answer_quotes_only_the_start_of_its_body(http_server: HttpSink) -> None:
    written = [0]
    # far more than loopback socket buffers hold (several MB once autotuned): what the
    # receiver manages to write is bounded by those buffers, not by the answer's size
    http_server.reply = _huge(written, status=500, size=64 * 2**20)
    notifications = _system(http_server.url)
    notifications.retry_policy = RetryPolicy.NONE

    result = (await notifications.notify(channels=["hooks"], body="x"))["hooks"]
    await notifications.close()

    message = str(result.error)
    assert "answered 500: 'xxxx" in message and len(message) < 400
    assert written[0] < 32 * 2**20


async def test_a_refused_connection_does_not_use_a_rate_limit_slot() -> None:
    # the slot used to be taken before connecting: a try that could not even connect
    # made the next delivery wait a whole interval (a minute here)
    port = free_port()
    notifications = NotificationSystem(retry_policy=RetryPolicy.NONE)
    notifications.add_channel(
        "hooks", WebhookChannel(f"http://127.0.0.1:{port}/", timeout=2.0), rate_limit="1/min"
    )
    refused = await notifications.notify(body="x")
    sink = await HttpSink().start(port)
    try:
        sent = await asyncio.wait_for(notifications.notify(body="y"), 10)
    finally:
        await notifications.close()
        await sink.close()

    assert refused["hooks"].status == "failed" and sent.ok
    assert [json.loads(r.body)["body"] for r in sink.requests] == ["y"]
