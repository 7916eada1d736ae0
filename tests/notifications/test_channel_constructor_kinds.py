"""A channel's own ``kind`` is checked as ``add_channel(kind=...)`` checks it.

``MemoryChannel(kind="")``, ``ConsoleChannel(kind="sms ")``, ``AppriseChannel(url,
kind=3)`` were accepted: added without ``kind=``, the first fell back to the channel's
name without a word, the second had no recipient field (it sent with no phone), the
third was kept as is. Empty, blank or space-padded kinds are a ConfigurationError, a
non-str a TypeError, each naming the channel class."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from pepperpy.event import (
    AppriseChannel,
    Channel,
    ConfigurationError,
    ConsoleChannel,
    MemoryChannel,
    NotificationSystem,
)
from pepperpy.event.notifications.channels import channel_from_url

MAKERS: dict[str, Callable[[object], Channel]] = {
    "MemoryChannel": lambda kind: MemoryChannel(kind=kind),  # type: ignore[arg-type]
    "ConsoleChannel": lambda kind: ConsoleChannel(kind=kind),  # type: ignore[arg-type]
    "ConsoleChannel.stderr": lambda kind: ConsoleChannel.stderr(kind=kind),  # type: ignore[arg-type]
    "AppriseChannel": lambda kind: AppriseChannel("json://127.0.0.1:9/x", kind=kind),  # type: ignore[arg-type]
    "channel_from_url(memory://)": lambda kind: channel_from_url("memory://", kind=kind),  # type: ignore[arg-type]
    "channel_from_url(https://)": lambda kind: channel_from_url("https://127.0.0.1:9/h", kind=kind),  # type: ignore[arg-type]
}

BAD = [
    ("", ConfigurationError, "is empty: give one (email, sms, push, ...) or leave it out"),
    ("   ", ConfigurationError, "is empty"),
    ("sms ", ConfigurationError, "has spaces around it: 'sms '; did you mean 'sms'?"),
    (3, TypeError, "must be a str (or None), got 3"),
    (b"sms", TypeError, "must be a str (or None), got b'sms'"),
]


@pytest.mark.parametrize("maker", sorted(MAKERS))
@pytest.mark.parametrize(("kind", "error", "said"), BAD)
def test_a_bad_kind_is_refused_by_the_channel_naming_it(
    maker: str, kind: object, error: type[Exception], said: str
) -> None:
    with pytest.raises(error) as caught:
        MAKERS[maker](kind)
    message = str(caught.value)
    assert said in message
    owner = "channel_from_url()" if maker.startswith("channel_from_url") else maker
    assert message.startswith(f"kind of {owner.removesuffix('.stderr')} ")


@pytest.mark.parametrize("maker", sorted(MAKERS))
def test_a_good_kind_or_none_is_kept(maker: str) -> None:
    assert MAKERS[maker](None) is not None
    channel = MAKERS[maker]("sms")
    if not maker.endswith("(https://)"):  # a webhook's kind is its own
        assert channel.kind == "sms"


async def test_a_channel_of_kind_sms_sends_to_the_phone_without_add_channel_kind() -> None:
    notifications = NotificationSystem()
    try:
        inbox = notifications.add_channel("texts", MemoryChannel(kind="sms"))
        await notifications.notify(body="hi", user={"phone": "+15550100"})
        assert [n.recipient for n in inbox.outbox] == ["+15550100"]
    finally:
        await notifications.close()
