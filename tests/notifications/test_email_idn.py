"""Email addresses with non-ASCII characters, against a real SMTP server (aiosmtpd on
loopback) with and without the SMTPUTF8 extension.

A non-ASCII domain is sent IDNA-encoded, which every server takes; a non-ASCII local
part needs SMTPUTF8, and a server without it is a permanent failure, not retried.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from pepperpy.event import (
    ConfigurationError,
    EmailChannel,
    NotificationSystem,
    RecipientError,
    RetryPolicy,
)
from tests.notifications.servers import MailSink, free_port, smtp_running

THREE_TRIES = RetryPolicy.fixed(max_attempts=3, base_delay=0.0)


class OptionsSink(MailSink):
    """Also keeps the MAIL FROM options of every message (SMTPUTF8 among them)."""

    def __init__(self) -> None:
        super().__init__()
        self.mail_options: list[list[str]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.mail_options.append(list(envelope.mail_options))
        return await super().handle_DATA(server, session, envelope)


def _server(smtputf8: bool) -> Iterator[tuple[OptionsSink, int]]:
    sink = OptionsSink()
    with smtp_running(sink, enable_SMTPUTF8=smtputf8) as port:
        yield sink, port


@pytest.fixture
def plain_server() -> Iterator[tuple[OptionsSink, int]]:
    """A server that does not offer SMTPUTF8."""
    yield from _server(smtputf8=False)


@pytest.fixture
def utf8_server() -> Iterator[tuple[OptionsSink, int]]:
    """A server that offers SMTPUTF8."""
    yield from _server(smtputf8=True)


def _system(port: int, sender: str = "no-reply@example.com") -> NotificationSystem:
    notifications = NotificationSystem(retry_policy=THREE_TRIES)
    notifications.add_channel(
        "email", EmailChannel("127.0.0.1", port, sender=sender, starttls=False)
    )
    return notifications


@pytest.mark.parametrize(
    ("to", "header"),
    [
        ("zoe@exämple.com", "zoe@xn--exmple-cua.com"),
        ("Zoë Ålund <zoe@exämple.com>", "Zoë Ålund <zoe@xn--exmple-cua.com>"),
        ("zoe@shop.exämple.com", "zoe@shop.xn--exmple-cua.com"),
        ("zoe@bücher.example\u3002com", "zoe@xn--bcher-kva.example.com"),  # an ideographic dot
    ],
)
async def test_a_non_ascii_domain_is_sent_idna_encoded_to_any_server(
    plain_server: tuple[OptionsSink, int], to: str, header: str
) -> None:
    sink, port = plain_server
    notifications = _system(port)

    result = await notifications.notify(channels=["email"], subject="s", body="b", to=to)

    assert result.ok, result["email"].error
    assert result["email"].attempts == 1
    [mail] = sink.messages
    assert mail.recipients == [header.rpartition("<")[2].rstrip(">")]
    assert mail.message["To"] == header
    assert "SMTPUTF8" not in sink.mail_options[0]  # nothing left that needs it
    await notifications.close()


async def test_a_non_ascii_local_part_is_sent_where_the_server_offers_smtputf8(
    utf8_server: tuple[OptionsSink, int],
) -> None:
    sink, port = utf8_server
    notifications = _system(port)

    result = await notifications.notify(
        channels=["email"], subject="s", body="b", to="Zoë <zoë@exämple.com>"
    )

    assert result.ok, result["email"].error
    [mail] = sink.messages
    assert mail.recipients == ["zoë@xn--exmple-cua.com"]
    assert mail.message["To"] == "Zoë <zoë@xn--exmple-cua.com>"
    assert "SMTPUTF8" in sink.mail_options[0]
    await notifications.close()


async def test_a_non_ascii_local_part_without_smtputf8_fails_for_good_saying_why(
    plain_server: tuple[OptionsSink, int],
) -> None:
    sink, port = plain_server
    notifications = _system(port)

    result = await notifications.notify(
        channels=["email"], subject="s", body="b", to="zoë@example.com"
    )

    error = result["email"].error
    assert isinstance(error, RecipientError)
    assert result["email"].attempts == 1  # permanent: not retried
    assert "'zoë@example.com' has non-ASCII characters before the @" in str(error)
    assert f"need the SMTPUTF8 extension, and the server 127.0.0.1:{port} does not" in str(error)
    assert sink.messages == []
    assert notifications.dead_letters[-1].exception is error
    await notifications.close()


@pytest.mark.parametrize(
    ("to", "problem"),
    [
        # characters that IDNA maps to a comma and an "@": never a second address
        ("zoe@exa\uff0cattacker\uff20evil.example", "is not a valid domain name"),
        ("zoe@ä..example", "is not a valid domain name (label empty"),
        ("zoe@" + "ä" * 70 + ".example", "is not a valid domain name (label"),
        ("zoë..x@example.com", "non-ASCII local part (before the @) is not dot-separated words"),
    ],
)
async def test_a_non_ascii_address_that_cannot_be_sent_is_refused_before_connecting(
    to: str, problem: str
) -> None:
    notifications = _system(free_port())  # nothing listens there

    result = await notifications.notify(channels=["email"], subject="s", body="b", to=to)

    error = result["email"].error
    assert isinstance(error, RecipientError), error
    assert problem in str(error)
    assert str(error).count("(") == str(error).count(")")
    assert result["email"].attempts == 1
    await notifications.close()


async def test_a_sender_with_a_non_ascii_domain_is_sent_idna_encoded(
    plain_server: tuple[OptionsSink, int],
) -> None:
    sink, port = plain_server
    notifications = _system(port, sender="Bücher Team <team@bücher.example>")

    result = await notifications.notify(
        channels=["email"], subject="s", body="b", to="ana@example.com"
    )

    assert result.ok, result["email"].error
    [mail] = sink.messages
    assert mail.sender == "team@xn--bcher-kva.example"
    assert mail.message["From"] == "Bücher Team <team@xn--bcher-kva.example>"
    assert mail.message["Message-ID"].endswith("@xn--bcher-kva.example>")
    await notifications.close()


def test_a_sender_whose_domain_cannot_be_encoded_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="is not a valid domain name"):
        EmailChannel("127.0.0.1", 25, sender="team@ä..example")


async def test_a_non_ascii_sender_local_part_without_smtputf8_fails_for_good(
    plain_server: tuple[OptionsSink, int],
) -> None:
    sink, port = plain_server
    notifications = _system(port, sender="zoë@example.com")

    result = await notifications.notify(
        channels=["email"], subject="s", body="b", to="ana@example.com"
    )

    error = result["email"].error
    assert isinstance(error, ConfigurationError)
    assert "sender 'zoë@example.com' has non-ASCII characters before the @" in str(error)
    assert result["email"].attempts == 1
    assert sink.messages == []
    await notifications.close()
