"""The parts of an idempotency key (the key, the channel, the recipient...) cannot run
into each other: ``|``, which joins them, is valid in an email address."""

from __future__ import annotations

from pepperpy.event import EmailChannel, Event, MemoryChannel, NotificationSystem, RetryPolicy
from tests.notifications.servers import MailSink


async def test_a_bar_in_the_key_or_the_address_does_not_make_two_deliveries_one(
    smtp_server: tuple[MailSink, int],
) -> None:
    # "key:A|email" + "|email|" + "x@example.com" was "key:A" + "|email|" +
    # "email|x@example.com": one digest, so the second mail was a "duplicate", never sent
    sink, port = smtp_server
    notifications = NotificationSystem(retry_policy=RetryPolicy.NONE)
    notifications.add_channel("email", EmailChannel("127.0.0.1", port, sender="a@example.com"))

    first = await notifications.notify(
        subject="s", body="one", to="x@example.com", idempotency_key="A|email"
    )
    second = await notifications.notify(
        subject="s", body="two", to="email|x@example.com", idempotency_key="A"
    )
    again = await notifications.notify(
        subject="s", body="two", to="email|x@example.com", idempotency_key="A"
    )
    await notifications.close()

    assert first["email"].status == "sent"
    assert second["email"].status == "sent", second["email"]
    assert again["email"].status == "duplicate"
    assert sorted(mail.recipients[0] for mail in sink.messages) == [
        "email|x@example.com",
        "x@example.com",
    ]


async def test_a_backslash_cannot_stand_in_for_the_escape() -> None:
    # escaping "|" as "\|" alone would make key "A\" + "|" + ... the same text as key "A\|..."
    notifications = NotificationSystem(retry_policy=RetryPolicy.NONE)
    inbox = MemoryChannel(kind="email")
    notifications.add_channel("email", inbox)

    for key, to in (("A\\", "email|x@example.com"), ("A\\|email", "x@example.com")):
        result = await notifications.notify(body="b", to=to, idempotency_key=key)
        assert result["email"].status == "sent", (key, to)
    await notifications.close()

    assert len({sent.key for sent in inbox.outbox}) == 2


async def test_keys_without_a_bar_or_backslash_are_what_they_were() -> None:
    # an upgrade must not change the usual keys: a redelivery after it would send again
    notifications = NotificationSystem(retry_policy=RetryPolicy.NONE)
    inbox = MemoryChannel(kind="email")
    notifications.add_channel("email", inbox)

    async def shipped(event: Event) -> None:
        await notifications.notify(body="on its way", to="ana@example.com")

    notifications.on("order.shipped", shipped)
    await notifications.notify(
        subject="Hi", body="hello", to="ana@example.com", idempotency_key="order-42-shipped"
    )
    await notifications.emit(Event("order.shipped", id="0190c9a1-0000-7000-8000-000000000042"))
    await notifications.close()

    assert [sent.key for sent in inbox.outbox] == [
        "678708965b664950c339d093d598bc5f",
        "2392e7a52f7ab6c47b2c3324ea2f2eb2",
    ]
