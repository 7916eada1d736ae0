"""Addresses with a quoted local part (RFC 5321/5322: ``"john doe"@example.com``), against
a real SMTP server (aiosmtpd on loopback) that records the MAIL FROM and RCPT TO command
lines exactly as they arrived."""

from __future__ import annotations

from collections.abc import Iterator

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


class CommandLog:
    """The arguments of every MAIL and RCPT command, as the client wrote them."""

    def __init__(self) -> None:
        self.mail: list[str] = []
        self.rcpt: list[str] = []


@pytest.fixture
def recording_server() -> Iterator[tuple[MailSink, CommandLog, int]]:
    yield from _recording(smtputf8=True)


def _as_sent(arg: str | None) -> str:
    """A command's argument as the client wrote it (aiosmtpd keeps non-ASCII bytes as
    surrogate escapes)."""
    return (arg or "").encode("utf-8", "surrogateescape").decode("utf-8")


def _recording(smtputf8: bool) -> Iterator[tuple[MailSink, CommandLog, int]]:
    from aiosmtpd.smtp import SMTP

    sink = MailSink()
    log = CommandLog()

    class RecordingSMTP(SMTP):
        async def smtp_MAIL(self, arg: str | None) -> None:
            log.mail.append(_as_sent(arg))
            await super().smtp_MAIL(arg)

        async def smtp_RCPT(self, arg: str | None) -> None:
            log.rcpt.append(_as_sent(arg))
            await super().smtp_RCPT(arg)

    with smtp_running(sink, smtp_class=RecordingSMTP, enable_SMTPUTF8=smtputf8) as port:
        yield sink, log, port


def _system(port: int, sender: str = "no-reply@example.com") -> NotificationSystem:
    notifications = NotificationSystem(retry_policy=THREE_TRIES)
    notifications.add_channel(
        "email", EmailChannel("127.0.0.1", port, sender=sender, starttls=False)
    )
    return notifications


@pytest.mark.parametrize(
    ("to", "envelope", "header"),
    [
        ('"john doe"@example.com', '"john doe"@example.com', '"john doe"@example.com'),
        ('"a@b"@example.com', '"a@b"@example.com', '"a@b"@example.com'),
        ('"a\\"b"@example.com', '"a\\"b"@example.com', '"a\\"b"@example.com'),
        ('"a,b"@example.com', '"a,b"@example.com', '"a,b"@example.com'),
        (
            'John Doe <"john doe"@example.com>',
            '"john doe"@example.com',
            'John Doe <"john doe"@example.com>',
        ),
        (
            '"Doe, John" <"john doe"@example.com>',
            '"john doe"@example.com',
            '"Doe, John" <"john doe"@example.com>',
        ),
        (
            '"john doe"@exämple.com',
            '"john doe"@xn--exmple-cua.com',
            '"john doe"@xn--exmple-cua.com',
        ),
        # quotes that are not needed are dropped, as RFC 5321 asks: the same mailbox
        ('"ana"@example.com', "ana@example.com", "ana@example.com"),
    ],
)
async def test_a_quoted_local_part_reaches_the_server_quoted(
    recording_server: tuple[MailSink, CommandLog, int], to: str, envelope: str, header: str
) -> None:
    sink, log, port = recording_server
    notifications = _system(port)

    result = await notifications.notify(channels=["email"], subject="s", body="b", to=to)

    assert result.ok, result["email"].error
    assert log.rcpt == [f"TO:<{envelope}>"]
    [mail] = sink.messages
    assert mail.recipients == [envelope]
    assert str(mail.message["To"]) == header
    assert mail.message["To"].addresses[0].addr_spec == envelope
    await notifications.close()


@pytest.mark.parametrize(
    ("sender", "envelope", "header"),
    [
        ('"no reply"@example.com', '"no reply"@example.com', '"no reply"@example.com'),
        (
            'Alerts <"no reply"@example.com>',
            '"no reply"@example.com',
            'Alerts <"no reply"@example.com>',
        ),
        (
            '"no reply"@exämple.com',
            '"no reply"@xn--exmple-cua.com',
            '"no reply"@xn--exmple-cua.com',
        ),
        ('"a@b"@exämple.com', '"a@b"@xn--exmple-cua.com', '"a@b"@xn--exmple-cua.com'),
        ('"no.reply"@exämple.com', "no.reply@xn--exmple-cua.com", "no.reply@xn--exmple-cua.com"),
    ],
)
async def test_a_quoted_sender_reaches_the_server_quoted(
    recording_server: tuple[MailSink, CommandLog, int], sender: str, envelope: str, header: str
) -> None:
    sink, log, port = recording_server
    notifications = _system(port, sender=sender)

    result = await notifications.notify(
        channels=["email"], subject="s", body="b", to="ana@example.com"
    )

    assert result.ok, result["email"].error
    assert (log.mail[0] + " ").startswith(f"FROM:<{envelope}> ")  # then SIZE=, BODY=
    [mail] = sink.messages
    assert mail.sender == envelope
    assert str(mail.message["From"]) == header
    await notifications.close()


@pytest.mark.parametrize(
    "to",
    [
        '"john doe" @example.com',  # a space outside the quotes
        "john doe@example.com",
        '"a"b@example.com',  # a quoted word glued to an atom
        '"unterminated@example.com',
        "victim@shop.example@evil.example",
        '"a"@b"@example.com',
    ],
)
async def test_a_malformed_quoted_local_part_is_refused_before_connecting(to: str) -> None:
    notifications = _system(free_port())  # nothing listens: a refused address never connects

    result = await notifications.notify(channels=["email"], subject="s", body="b", to=to)

    error = result["email"].error
    assert isinstance(error, RecipientError), error
    assert repr(to) in str(error)
    assert result["email"].attempts == 1
    await notifications.close()


def test_a_malformed_quoted_sender_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="sender"):
        EmailChannel("127.0.0.1", 25, sender='"a"b@exämple.com')


@pytest.fixture
def utf8_recording_server() -> Iterator[tuple[MailSink, CommandLog, int]]:
    yield from _recording(smtputf8=True)


@pytest.fixture
def plain_recording_server() -> Iterator[tuple[MailSink, CommandLog, int]]:
    yield from _recording(smtputf8=False)


@pytest.mark.parametrize(
    ("to", "envelope", "header"),
    [
        ('"zoë ålund"@example.com', '"zoë ålund"@example.com', '"zoë ålund"@example.com'),
        (
            'Zoë <"zoë@home"@exämple.com>',
            '"zoë@home"@xn--exmple-cua.com',
            'Zoë <"zoë@home"@xn--exmple-cua.com>',
        ),
        ('"zoë"@example.com', "zoë@example.com", "zoë@example.com"),  # needless quotes
    ],
)
async def test_a_quoted_non_ascii_local_part_goes_out_with_smtputf8(
    utf8_recording_server: tuple[MailSink, CommandLog, int], to: str, envelope: str, header: str
) -> None:
    sink, log, port = utf8_recording_server
    notifications = _system(port)

    result = await notifications.notify(channels=["email"], subject="s", body="b", to=to)

    assert result.ok, result["email"].error
    assert log.rcpt == [f"TO:<{envelope}>"]
    assert "SMTPUTF8" in log.mail[0].split()
    [mail] = sink.messages
    assert mail.recipients == [envelope]
    assert mail.message["To"] == header
    await notifications.close()


async def test_a_quoted_non_ascii_local_part_needs_smtputf8(
    plain_recording_server: tuple[MailSink, CommandLog, int],
) -> None:
    sink, log, port = plain_recording_server
    notifications = _system(port)

    result = await notifications.notify(
        channels=["email"], subject="s", body="b", to='"zoë ålund"@example.com'
    )

    error = result["email"].error
    assert isinstance(error, RecipientError), error
    assert "SMTPUTF8" in str(error)
    assert result["email"].attempts == 1
    assert log.rcpt == [] and sink.messages == []
    await notifications.close()


async def test_a_quoted_local_part_with_a_c1_control_is_refused() -> None:
    notifications = _system(free_port())

    result = await notifications.notify(
        channels=["email"], subject="s", body="b", to='"zoë\x85x"@example.com'
    )

    assert isinstance(result["email"].error, RecipientError), result["email"].error
    await notifications.close()
