"""``add_channel(kind=...)`` refuses a kind no recipient field or template could match.

``kind=""`` was accepted and fell back to the channel's name without a word; ``"sms "``
made a channel of kind ``'sms '``, which has no recipient field, so it sent without a
phone number; ``kind=3`` was kept as is."""

from __future__ import annotations

import pytest

from pepperpy.event import ConfigurationError, MemoryChannel, NotificationSystem


@pytest.mark.parametrize(
    ("kind", "error", "said"),
    [
        ("", ConfigurationError, "kind of channel 'texts' is empty"),
        ("   ", ConfigurationError, "kind of channel 'texts' is empty"),
        ("sms ", ConfigurationError, "has spaces around it: 'sms '; did you mean 'sms'?"),
        (3, TypeError, "kind of channel 'texts' must be a str (or None), got 3"),
        (b"sms", TypeError, "kind of channel 'texts' must be a str (or None), got b'sms'"),
    ],
)
async def test_a_bad_kind_is_refused_and_adds_nothing(
    kind: object, error: type[Exception], said: str
) -> None:
    notifications = NotificationSystem()
    try:
        for channel in (MemoryChannel(), "memory://"):
            with pytest.raises(error) as caught:
                notifications.add_channel("texts", channel, kind=kind)  # type: ignore[arg-type]
            assert said in str(caught.value)
        assert notifications.channels == {}
    finally:
        await notifications.close()


async def test_a_good_kind_picks_the_recipient_field() -> None:
    notifications = NotificationSystem()
    try:
        inbox = notifications.add_channel("texts", MemoryChannel(), kind="sms")
        assert isinstance(inbox, MemoryChannel)
        await notifications.notify(body="hi", user={"phone": "+15550100"})
        assert [n.recipient for n in inbox.outbox] == ["+15550100"]
    finally:
        await notifications.close()
