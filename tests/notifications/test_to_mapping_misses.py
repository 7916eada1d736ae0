"""A ``to=`` mapping with no entry for a channel: the channel's RecipientError says so,
naming the mapping's keys, instead of "pass to= or user.email" as if no ``to=`` had been
given (found with a misspelt channel name, ``to={"emial": ...}``)."""

from __future__ import annotations

from pepperpy.event import MemoryChannel, NotificationSystem, RecipientError


async def test_a_misspelt_to_key_is_named_in_the_error() -> None:
    notifications = NotificationSystem()
    inbox = MemoryChannel()
    notifications.add_channel("email", inbox)
    result = await notifications.notify(body="disk full", to={"emial": "ops@example.com"})
    await notifications.close()

    failed = result["email"]
    assert failed.status == "failed" and not inbox.outbox
    assert isinstance(failed.error, RecipientError)
    assert str(failed.error) == (
        "channel 'email' (email) has no recipient: to= names neither 'email' "
        "(its keys: 'emial'), and no user in the context"
    )


async def test_the_channel_kind_is_named_too_and_a_user_still_serves() -> None:
    notifications = NotificationSystem()
    notifications.add_channel("pager", MemoryChannel(kind="sms"))
    notifications.add_channel("ops-mail", MemoryChannel(kind="email"))
    result = await notifications.notify(
        body="disk full", to={"pagr": "+15550001111"}, user={"email": "ops@example.com"}
    )
    await notifications.close()

    assert result["ops-mail"].status == "sent"  # from user.email, as before
    assert str(result["pager"].error) == (
        "channel 'pager' (sms) has no recipient: to= names neither 'pager' nor its kind "
        "'sms' (its keys: 'pagr'), and user has no 'phone'"
    )
