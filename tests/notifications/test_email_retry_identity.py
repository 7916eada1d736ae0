"""A retried email is the same message to its receivers: against a real SMTP server
(aiosmtpd on loopback) that keeps a message but whose answer never arrives in time, so
the channel tries again and the server ends up holding two copies."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from pepperpy.event import EmailChannel, NotificationSystem, RetryPolicy
from tests.notifications.servers import MailSink, smtp_running


class LateAnswerSink(MailSink):
    """Keeps every message, but answers the first DATA only after ``delay`` seconds
    (the client has given up by then: the message arrived, its 250 did not)."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        answer = await super().handle_DATA(server, session, envelope)
        delay, self.delay = self.delay, 0.0
        await asyncio.sleep(delay)
        return answer


@pytest.fixture
def late_server() -> Iterator[tuple[LateAnswerSink, int]]:
    sink = LateAnswerSink(delay=30.0)
    with smtp_running(sink) as port:
        yield sink, port


@pytest.mark.parametrize("key", [None, "order-42-shipped"])
async def test_a_retried_email_keeps_its_message_id(
    late_server: tuple[LateAnswerSink, int], key: str | None
) -> None:
    sink, port = late_server
    notifications = NotificationSystem(
        retry_policy=RetryPolicy.fixed(max_attempts=2, base_delay=0.0)
    )
    notifications.add_channel(
        "email",
        EmailChannel("127.0.0.1", port, sender="no-reply@example.com", starttls=False, timeout=1),
    )

    result = await notifications.notify(
        channels=["email"], subject="s", body="b", to="ana@example.com", idempotency_key=key
    )

    assert result.ok, result["email"].error
    assert result["email"].attempts == 2
    first, second = sink.messages  # the receiver holds both copies
    # ... and can tell they are one message (RFC 5322 3.6.4)
    assert first.message["Message-ID"] == second.message["Message-ID"]
    assert first.message["Message-ID"].endswith("@example.com>")
    await notifications.close()


async def test_two_notifications_have_different_message_ids(
    smtp_server: tuple[MailSink, int],
) -> None:
    sink, port = smtp_server
    notifications = NotificationSystem()
    notifications.add_channel(
        "email", EmailChannel("127.0.0.1", port, sender="no-reply@example.com", starttls=False)
    )

    for _ in range(2):
        result = await notifications.notify(
            channels=["email"], subject="s", body="b", to="ana@example.com"
        )
        assert result.ok, result["email"].error

    first, second = sink.messages
    assert first.message["Message-ID"] != second.message["Message-ID"]
    await notifications.close()


async def test_a_key_used_again_once_forgotten_is_a_new_message_id(
    smtp_server: tuple[MailSink, int],
) -> None:
    # a key sent again once the store forgot it (here: it keeps one key) is a new
    # message; receivers that drop a repeated Message-ID would have hidden it
    sink, port = smtp_server
    notifications = NotificationSystem(idempotency_size=1)
    notifications.add_channel(
        "email", EmailChannel("127.0.0.1", port, sender="no-reply@example.com", starttls=False)
    )

    for key in ("reset-ana", "reset-bo", "reset-ana"):
        result = await notifications.notify(
            channels=["email"], subject="s", body="b", to="ana@example.com", idempotency_key=key
        )
        assert result["email"].status == "sent", result["email"].error

    first, _, again = sink.messages
    assert first.message["Message-ID"] != again.message["Message-ID"]
    await notifications.close()
