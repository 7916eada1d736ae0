"""Once the SMTP server accepted the message (250 after DATA) it is delivered, whatever
happens during QUIT: a close() that cut the try off there reported a ClosedError and gave
the idempotency key back, so a redelivery sent the message a second time."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from pepperpy.event import EmailChannel, NotificationSystem, RetryPolicy
from pepperpy.event.notifications import MemoryIdempotencyStore
from tests.notifications.servers import MailSink, smtp_running


class StallingQuit(MailSink):
    """Accepts every message, then takes ``quit`` seconds to answer QUIT."""

    def __init__(self) -> None:
        super().__init__()
        self.quit = 30.0
        self.quitting = threading.Event()  # set from the server's thread

    async def handle_QUIT(self, server: Any, session: Any, envelope: Any) -> str:
        self.quitting.set()
        await asyncio.sleep(self.quit)
        return "221 Bye"


@pytest.fixture
def stalling_server() -> Iterator[tuple[StallingQuit, int]]:
    sink = StallingQuit()
    with smtp_running(sink) as port:
        yield sink, port


async def _until_quitting(sink: StallingQuit) -> None:
    # the client sends QUIT only once it has read the server's 250 to the message
    for _ in range(1000):
        if sink.quitting.is_set():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the client never sent QUIT")


def _system(port: int, store: MemoryIdempotencyStore) -> NotificationSystem:
    notifications = NotificationSystem(
        retry_policy=RetryPolicy.fixed(max_attempts=3, base_delay=0.0), idempotency=store
    )
    notifications.add_channel("email", EmailChannel("127.0.0.1", port, sender="a@example.com"))
    return notifications


async def test_close_during_quit_after_the_message_was_accepted_is_a_delivery(
    stalling_server: tuple[StallingQuit, int],
) -> None:
    sink, port = stalling_server
    store = MemoryIdempotencyStore()
    notifications = _system(port, store)
    pending = asyncio.ensure_future(
        notifications.notify(subject="s", body="b", to="x@example.com", idempotency_key="k-1")
    )
    await _until_quitting(sink)

    await notifications.close(grace=0.2)

    result = (await asyncio.wait_for(pending, 10))["email"]
    assert result.status == "sent", result.error
    assert result.attempts == 1
    assert list(notifications.dead_letters) == []
    # a redelivery (another system sharing the store) finds it delivered: sent once
    sink.quit = 0.0
    again = _system(port, store)
    second = await again.notify(subject="s", body="b", to="x@example.com", idempotency_key="k-1")
    await again.close()
    assert second["email"].status == "duplicate"
    assert len(sink.messages) == 1


async def test_a_cancelled_notify_during_quit_keeps_the_key_delivered(
    stalling_server: tuple[StallingQuit, int],
) -> None:
    sink, port = stalling_server
    store = MemoryIdempotencyStore()
    notifications = _system(port, store)
    pending = asyncio.ensure_future(
        notifications.notify(subject="s", body="b", to="x@example.com", idempotency_key="k-2")
    )
    await _until_quitting(sink)

    pending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await pending

    sink.quit = 0.0
    second = await notifications.notify(
        subject="s", body="b", to="x@example.com", idempotency_key="k-2"
    )
    await notifications.close()
    assert second["email"].status == "duplicate"
    assert len(sink.messages) == 1
