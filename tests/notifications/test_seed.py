"""The seed document's NotificationSystem snippet runs as written (inside ``main``),
followed by emitting the event it subscribes to."""

from __future__ import annotations

import logging

import pytest


async def test_seed_notification_snippet_runs_as_written(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pepperpy.event.notifications")

    # --- the seed snippet, verbatim --------------------------------------------------
    from pepperpy.event import NotificationSystem

    # Create system
    notifications = NotificationSystem()

    # Add channels
    notifications.add_channel("email")
    notifications.add_channel("push")
    notifications.add_channel("sms")

    # Subscribe to notifications
    @notifications.on("user.signup")
    async def send_welcome(event):  # type: ignore[no-untyped-def]
        user = event.data["user"]
        await notifications.notify(channels=["email"], template="welcome", user=user)

    # --- then the event it waits for -------------------------------------------------
    await notifications.emit(
        "user.signup", {"user": {"id": "123", "name": "Ana", "email": "ana@example.com"}}
    )

    [sent] = notifications.outbox
    assert sent.channel == "email"
    assert sent.recipient == "ana@example.com"
    assert sent.subject == "Welcome, Ana!"
    assert sent.body.startswith("Hi Ana,")
    assert "outbox [email] to ana@example.com" in caplog.text
    assert not notifications.dead_letters
