"""The configured sender and reply_to of an email channel are exactly one address each,
checked when the channel is made; what is accepted reaches a real SMTP server (aiosmtpd
on loopback) as one envelope sender and one From:."""

from __future__ import annotations

import pytest

from pepperpy.event import ConfigurationError, EmailChannel, NotificationSystem, RetryPolicy
from tests.notifications.servers import MailSink

BAD = [
    ("Acme, Inc. <alerts@example.com>", "parses as 2 addresses"),  # an unquoted comma
    ("alerts@example.com, boss@example.com", "parses as 2 addresses"),
    # email.utils.getaddresses reads these as two addresses up to CPython 3.11.9/3.12.5,
    # and as none since its strict parsing (CVE-2023-27043; 3.13): refused either way
    ("alerts@example.com boss@example.com", "parses as 2 addresses|no user@domain part"),
    ("Ops <alerts@example.com> extra", "parses as 2 addresses|no user@domain part"),
    ("Team: alerts@example.com;", "not one email address"),
    ("alerts", "no user@domain part"),
    ("alerts@", "no user@domain part"),
    ("@example.com", "no user@domain part"),
    ("<>", "no user@domain part"),
]


@pytest.mark.parametrize(("sender", "problem"), BAD)
def test_a_sender_that_is_not_one_address_is_refused_when_the_channel_is_made(
    sender: str, problem: str
) -> None:
    with pytest.raises(ConfigurationError, match=problem) as caught:
        EmailChannel("127.0.0.1", 25, sender=sender)
    assert f"sender (from=) {sender!r}" in str(caught.value)


@pytest.mark.parametrize(("reply_to", "problem"), BAD)
def test_a_reply_to_that_is_not_one_address_is_refused_when_the_channel_is_made(
    reply_to: str, problem: str
) -> None:
    with pytest.raises(ConfigurationError, match=problem) as caught:
        EmailChannel("127.0.0.1", 25, sender="alerts@example.com", reply_to=reply_to)
    assert f"reply_to {reply_to!r}" in str(caught.value)


def test_a_sender_from_a_url_is_checked_the_same_way() -> None:
    with pytest.raises(ConfigurationError, match="parses as 2 addresses"):
        EmailChannel.from_url("smtp://127.0.0.1?from=Acme,%20Inc.%20%3Ca@example.com%3E")


@pytest.mark.parametrize(
    ("sender", "header"),
    [
        ('"Acme, Inc." <alerts@example.com>', '"Acme, Inc." <alerts@example.com>'),
        ("Acme Alerts <alerts@example.com>", "Acme Alerts <alerts@example.com>"),
        ("alerts@example.com", "alerts@example.com"),
    ],
)
async def test_one_sender_reaches_the_server_as_one_envelope_sender(
    smtp_server: tuple[MailSink, int], sender: str, header: str
) -> None:
    sink, port = smtp_server
    notifications = NotificationSystem(retry_policy=RetryPolicy.fixed(max_attempts=2))
    notifications.add_channel(
        "email", EmailChannel("127.0.0.1", port, sender=sender, reply_to=sender, starttls=False)
    )

    result = await notifications.notify(
        channels=["email"], subject="s", body="b", to="ana@example.com"
    )

    assert result.ok, result["email"].error
    [mail] = sink.messages
    assert mail.sender == "alerts@example.com"
    assert str(mail.message["From"]) == header
    assert str(mail.message["Reply-To"]) == header
    await notifications.close()
