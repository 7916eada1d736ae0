"""Small input checks of the email channel, against a real SMTP server (aiosmtpd on
loopback): reply_to with a non-ASCII domain, servers lacking STARTTLS or AUTH, and
recipients with an empty local part."""

from __future__ import annotations

import pytest

from pepperpy.event import (
    ConfigurationError,
    EmailChannel,
    NotificationSystem,
    RecipientError,
    RetryPolicy,
)
from tests.notifications.servers import MailSink, free_port

THREE_TRIES = RetryPolicy.fixed(max_attempts=3, base_delay=0.0)


async def test_a_reply_to_with_a_non_ascii_domain_is_sent_idna_encoded(
    smtp_server: tuple[MailSink, int],
) -> None:
    sink, port = smtp_server
    notifications = NotificationSystem(retry_policy=THREE_TRIES)
    channel = EmailChannel(
        "127.0.0.1",
        port,
        sender="no-reply@example.com",
        reply_to="Bücher Team <team@bücher.example>",
        starttls=False,
    )
    notifications.add_channel("email", channel)

    result = await notifications.notify(
        channels=["email"], subject="s", body="b", to="ana@example.com"
    )

    assert result.ok, result["email"].error
    [mail] = sink.messages
    assert mail.message["Reply-To"] == "Bücher Team <team@xn--bcher-kva.example>"
    await notifications.close()


def test_a_reply_to_whose_domain_cannot_be_encoded_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match=r"reply_to 'team@ä\.\.example'.*valid domain"):
        EmailChannel("127.0.0.1", 25, sender="no-reply@example.com", reply_to="team@ä..example")


def test_a_reply_to_from_a_url_is_checked_the_same_way() -> None:
    with pytest.raises(ConfigurationError, match="reply_to"):
        EmailChannel.from_url("smtp://127.0.0.1?from=a@example.com&reply_to=team@%C3%A4..example")


@pytest.mark.parametrize(
    ("options", "lacking"),
    [
        ({"starttls": True}, "does not offer STARTTLS, which starttls=true requires"),
        (
            {"starttls": False, "username": "ana", "password": "secret"},
            "does not offer AUTH, which logging in with the configured username needs",
        ),
        (
            {"username": "ana", "password": "secret"},  # opportunistic TLS, none offered
            "does not offer AUTH",
        ),
    ],
)
async def test_a_server_lacking_starttls_or_auth_fails_for_good_naming_it(
    smtp_server: tuple[MailSink, int], options: dict[str, object], lacking: str
) -> None:
    sink, port = smtp_server
    notifications = NotificationSystem(retry_policy=THREE_TRIES)
    notifications.add_channel(
        "email", EmailChannel("127.0.0.1", port, sender="no-reply@example.com", **options)
    )

    result = await notifications.notify(
        channels=["email"], subject="s", body="b", to="ana@example.com"
    )

    error = result["email"].error
    assert isinstance(error, ConfigurationError), error
    assert result["email"].attempts == 1  # permanent: not retried
    assert f"the server 127.0.0.1:{port} {lacking}" in str(error)
    assert sink.messages == []
    await notifications.close()


@pytest.mark.parametrize(
    "to",
    [
        '""@b.com',
        '"" <""@b.com>',
        'Ana <""@b.com>',
        '""""@b.com',
        '"".""@b.com',
        'a.""@b.com',
        '"".a@b.com',
        '" "@b.com',
        '"\\"@b.com',
        "@b.com",
        ".@b.com",
    ],
)
async def test_a_recipient_with_an_empty_local_part_is_refused(to: str) -> None:
    notifications = NotificationSystem(retry_policy=THREE_TRIES)
    notifications.add_channel(
        "email", EmailChannel("127.0.0.1", free_port(), sender="a@example.com", starttls=False)
    )

    result = await notifications.notify(channels=["email"], subject="s", body="b", to=to)

    error = result["email"].error
    assert isinstance(error, RecipientError), error
    assert repr(to) in str(error)
    assert result["email"].attempts == 1
    await notifications.close()


async def test_a_quoted_local_part_with_text_is_still_sent(
    smtp_server: tuple[MailSink, int],
) -> None:
    sink, port = smtp_server
    notifications = NotificationSystem(retry_policy=THREE_TRIES)
    notifications.add_channel(
        "email", EmailChannel("127.0.0.1", port, sender="a@example.com", starttls=False)
    )

    result = await notifications.notify(
        channels=["email"], subject="s", body="b", to='"ana"@example.com'
    )

    assert result.ok, result["email"].error
    assert sink.messages[0].recipients == ["ana@example.com"]
    await notifications.close()
