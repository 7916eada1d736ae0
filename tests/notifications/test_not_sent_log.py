"""A notification refused before any send is logged as not sent, not as 'after 0 attempt(s)'."""

from __future__ import annotations

import logging

import pytest

from pepperpy.event import NotificationSystem, RecipientError


async def test_a_missing_recipient_is_logged_as_not_sent(caplog: pytest.LogCaptureFixture) -> None:
    notifications = NotificationSystem()
    notifications.add_channel("email")
    with caplog.at_level(logging.ERROR, logger="pepperpy.event"):
        result = await notifications.notify(channels=["email"], body="hi")
    assert isinstance(result["email"].error, RecipientError)
    assert result["email"].attempts == 0
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(lines) == 1, lines
    assert lines[0].startswith("notification on channel 'email' not sent: RecipientError: ")
    assert "attempt" not in lines[0]
    assert caplog.records[-1].exc_info is None  # nothing was tried: no traceback to show
