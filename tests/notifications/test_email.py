"""Email over a real SMTP server (aiosmtpd on loopback), plain and with STARTTLS."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from pepperpy.event import (
    ClosedError,
    ConfigurationError,
    EmailChannel,
    Notification,
    NotificationError,
    NotificationSystem,
    RecipientError,
    RetryPolicy,
)
from pepperpy.event.notifications import RateLimit
from tests.notifications.servers import (
    MailSink,
    RejectingSink,
    SlowSink,
    free_port,
    self_signed_cert,
    server_tls_context,
    smtp_running,
)

FAST_RETRY = RetryPolicy.fixed(max_attempts=3, base_delay=0.0)


def _system() -> NotificationSystem:
    notifications = NotificationSystem(retry_policy=FAST_RETRY)
    notifications.add_template(
        "welcome",
        "Hello {{ user.name }}, your plan is {{ plan }}.",
        subject="Welcome {{ user.name }}",
        html="<p>Hello <b>{{ user.name }}</b></p>",
    )
    return notifications


async def test_email_reaches_the_smtp_server_rendered(smtp_server: tuple[MailSink, int]) -> None:
    sink, port = smtp_server
    notifications = _system()
    notifications.add_channel(
        "email", f"smtp://127.0.0.1:{port}?from=noreply@example.com&reply_to=help@example.com"
    )
    user = {"name": "Ana <admin>", "email": "ana@example.com"}

    result = await notifications.notify(
        channels=["email"], template="welcome", user=user, plan="pro"
    )

    assert result.ok and result["email"].status == "sent"
    assert len(sink.messages) == 1
    mail = sink.messages[0]
    assert mail.recipients == ["ana@example.com"]
    assert mail.sender == "noreply@example.com"
    message = mail.message
    assert message["Subject"] == "Welcome Ana <admin>"
    assert message["To"] == "ana@example.com"
    assert message["Reply-To"] == "help@example.com"
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and html is not None
    assert text.get_content().strip() == "Hello Ana <admin>, your plan is pro."
    # the HTML part is autoescaped, the text part is not
    assert "Hello <b>Ana &lt;admin&gt;</b>" in html.get_content()


async def test_to_overrides_user_email(smtp_server: tuple[MailSink, int]) -> None:
    sink, port = smtp_server
    notifications = _system()
    notifications.add_channel("email", f"smtp://127.0.0.1:{port}?from=noreply@example.com")

    class User:
        name = "Bo"
        email = "bo@example.com"

    result = await notifications.notify(
        channels="email", template="welcome", to="ops@example.com", user=User(), plan="free"
    )

    assert result.ok
    assert sink.messages[0].recipients == ["ops@example.com"]


async def test_missing_address_is_a_recipient_error_without_sending(
    smtp_server: tuple[MailSink, int],
) -> None:
    sink, port = smtp_server
    notifications = _system()
    notifications.add_channel("email", f"smtp://127.0.0.1:{port}?from=noreply@example.com")

    result = await notifications.notify(
        channels=["email"], template="welcome", user={"name": "No Mail"}, plan="x"
    )

    assert not result.ok
    error = result["email"].error
    assert isinstance(error, RecipientError)
    assert "user.email" in str(error)
    assert sink.messages == []
    assert notifications.dead_letters[-1].exception is error


async def test_invalid_address_is_refused_before_connecting() -> None:
    notifications = _system()
    # nothing listens on this port: a refused address must not even try to connect
    notifications.add_channel("email", f"smtp://127.0.0.1:{free_port()}?from=a@example.com")

    result = await notifications.notify(
        channels=["email"], template="welcome", to="not an address", user={"name": "x"}, plan="y"
    )

    assert isinstance(result["email"].error, RecipientError)
    assert result["email"].attempts == 1


@pytest.mark.parametrize(
    "address",
    [
        "victim@shop.example, attacker@evil.example",
        "victim@shop.example attacker@evil.example",
        "victim@shop.example;attacker@evil.example",
        "Ana <victim@shop.example>, attacker@evil.example",
        "friends: victim@shop.example, attacker@evil.example;",
        "friends: victim@shop.example;",
        "victim@shop.example)<attacker@evil.example>",
        "victim@shop.example\r\nBcc: attacker@evil.example",
        "victim@shop.example@evil.example",
        "(note) victim@shop.example",
    ],
)
async def test_an_address_from_user_data_cannot_add_recipients(
    smtp_server: tuple[MailSink, int], address: str
) -> None:
    sink, port = smtp_server
    notifications = _system()
    notifications.add_channel("email", f"smtp://127.0.0.1:{port}?from=noreply@example.com")

    result = await notifications.notify(
        channels=["email"], template="welcome", user={"name": "x", "email": address}, plan="y"
    )

    assert isinstance(result["email"].error, RecipientError), result["email"]
    assert "not one email address" in str(result["email"].error)
    assert result["email"].attempts == 1
    assert sink.messages == []


@pytest.mark.parametrize(
    ("address", "header"),
    [
        ("ana@example.com", "ana@example.com"),
        ("  ana@example.com ", "ana@example.com"),
        ("Ana Doe <ana@example.com>", "Ana Doe <ana@example.com>"),
        ('"Doe, Ana" <ana@example.com>', '"Doe, Ana" <ana@example.com>'),
    ],
)
async def test_one_address_with_or_without_a_name_is_sent_to_that_address(
    smtp_server: tuple[MailSink, int], address: str, header: str
) -> None:
    sink, port = smtp_server
    notifications = _system()
    notifications.add_channel("email", f"smtp://127.0.0.1:{port}?from=noreply@example.com")

    result = await notifications.notify(
        channels=["email"], template="welcome", user={"name": "Ana", "email": address}, plan="y"
    )

    assert result.ok, result.failed
    [mail] = sink.messages
    assert mail.recipients == ["ana@example.com"]
    assert mail.message["To"] == header


async def test_permanent_smtp_refusal_is_not_retried() -> None:
    sink = RejectingSink()
    with smtp_running(sink) as port:
        notifications = _system()
        notifications.add_channel("email", f"smtp://127.0.0.1:{port}?from=noreply@example.com")
        result = await notifications.notify(
            channels=["email"],
            template="welcome",
            to="ghost@example.com",
            user={"name": "G"},
            plan="p",
        )

    failure = result["email"]
    assert failure.status == "failed"
    assert isinstance(failure.error, NotificationError)
    assert "550" in str(failure.error.__cause__)
    assert failure.attempts == 1
    assert notifications.dead_letters[-1].reason.startswith("NotificationError")


async def test_unreachable_server_is_retried_then_dead_lettered() -> None:
    notifications = _system()
    notifications.add_channel(
        "email", f"smtp://127.0.0.1:{free_port()}?from=noreply@example.com&timeout=2"
    )

    result = await notifications.notify(
        channels=["email"], template="welcome", to="a@example.com", user={"name": "A"}, plan="p"
    )

    assert result["email"].attempts == 3
    letter = notifications.dead_letters[-1]
    assert letter.channel == "email" and letter.attempts == 3
    assert letter.notification is not None and letter.notification.recipient == "a@example.com"


@pytest.fixture
def starttls_server(tmp_path: Path) -> Iterator[tuple[MailSink, int, Path]]:
    cert, key = self_signed_cert(tmp_path)
    sink = MailSink()
    tls = server_tls_context(cert, key)
    with smtp_running(sink, tls_context=tls, require_starttls=True) as port:
        yield sink, port, cert


async def test_starttls_with_a_trusted_self_signed_certificate(
    starttls_server: tuple[MailSink, int, Path],
) -> None:
    sink, port, cert = starttls_server
    client_context = ssl.create_default_context(cafile=str(cert))
    notifications = _system()
    notifications.add_channel(
        "email",
        EmailChannel(
            "127.0.0.1",
            port,
            sender="noreply@example.com",
            starttls=True,
            tls_context=client_context,
        ),
    )

    result = await notifications.notify(
        channels=["email"],
        template="welcome",
        to="tls@example.com",
        user={"name": "T"},
        plan="secure",
    )

    assert result.ok, result.failed
    assert sink.tls_used == [True]
    assert sink.messages[0].message["Subject"] == "Welcome T"


async def test_starttls_refuses_an_untrusted_certificate(
    starttls_server: tuple[MailSink, int, Path],
) -> None:
    sink, port, _ = starttls_server
    notifications = NotificationSystem(retry_policy=RetryPolicy.NONE)
    notifications.add_channel(
        "email", f"smtp://127.0.0.1:{port}?from=noreply@example.com&starttls=true"
    )

    result = await notifications.notify(channels=["email"], body="hi", to="x@example.com")

    assert not result.ok
    assert "certificate" in str(result["email"].error).lower()
    assert sink.messages == []


async def test_starttls_url_option_with_verification_off(
    starttls_server: tuple[MailSink, int, Path],
) -> None:
    sink, port, _ = starttls_server
    notifications = NotificationSystem()
    notifications.add_channel(
        "email", f"smtp://127.0.0.1:{port}?from=noreply@example.com&starttls=true&verify=false"
    )

    result = await notifications.notify(
        channels=["email"], subject="Plain", body="no template", to="x@example.com"
    )

    assert result.ok, result.failed
    assert sink.tls_used == [True]
    assert sink.messages[0].message["Subject"] == "Plain"


def test_smtp_url_parsing() -> None:
    channel = EmailChannel.from_url(
        "smtps://bob%40example.com:s%3Acret@mail.example.com:2465?reply_to=r@example.com&timeout=5"
    )
    assert channel.tls and channel.starttls is None
    assert (channel.host, channel.port) == ("mail.example.com", 2465)
    assert (channel.username, channel.password) == ("bob@example.com", "s:cret")
    assert channel.sender == "bob@example.com"  # the login doubles as the sender
    assert channel.reply_to == "r@example.com" and channel.timeout == 5.0
    assert "s:cret" not in repr(channel)


@pytest.mark.parametrize(
    "url",
    [
        "smtp://127.0.0.1:25",  # no sender
        "smtp://127.0.0.1:25?from=a@b.c&starttls=maybe",
        "smtp://127.0.0.1:25?from=a@b.c&colour=blue",
        "smtps://127.0.0.1:25?from=a@b.c&starttls=true",
        "smtp://127.0.0.1:25?from=a@b.c&timeout=soon",
        "smtp://127.0.0.1:25?from=a@b.c&timeout=nan",
        "smtp://127.0.0.1:25?from=a@b.c&timeout=inf",
        "smtp://127.0.0.1:25?from=a@b.c&timeout=0",
    ],
)
def test_bad_smtp_urls_are_configuration_errors(url: str) -> None:
    notifications = NotificationSystem()
    with pytest.raises(ConfigurationError):
        notifications.add_channel("email", url)


async def test_login_over_starttls_from_the_url(tmp_path: Path) -> None:
    from aiosmtpd.smtp import AuthResult, LoginPassword

    logins: list[tuple[bytes, bytes]] = []

    def authenticator(
        server: object, session: object, envelope: object, mechanism: str, data: object
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        logins.append((data.login, data.password))
        ok = data.password == b"p@ss:word"
        return AuthResult(success=ok, handled=False)  # not handled: aiosmtpd answers 535

    cert, key = self_signed_cert(tmp_path)
    sink = MailSink()
    with smtp_running(
        sink,
        tls_context=server_tls_context(cert, key),
        require_starttls=True,
        authenticator=authenticator,
        auth_required=True,
    ) as port:
        notifications = NotificationSystem(retry_policy=FAST_RETRY)
        base = f"127.0.0.1:{port}?from=mailer@example.com&starttls=true&verify=false"
        notifications.add_channel("email", f"smtp://mailer:p%40ss%3Aword@{base}")
        notifications.add_channel("wrong", f"smtp://mailer:nope@{base}")
        result = await notifications.notify(body="authenticated", to="a@example.com")

    assert result["email"].ok, result.failed
    assert not result["wrong"].ok and "535" in str(result["wrong"].error)
    assert result["wrong"].attempts == 1  # a refused login is permanent
    # the client tries each advertised mechanism (PLAIN, LOGIN) before giving up
    assert set(logins) == {(b"mailer", b"nope"), (b"mailer", b"p@ss:word")}
    assert [m.message.get_content().strip() for m in sink.messages] == ["authenticated"]


@pytest.fixture
def slow_smtp_server() -> Iterator[tuple[SlowSink, int]]:
    sink = SlowSink()
    with smtp_running(sink) as port:
        yield sink, port


@pytest.mark.parametrize(
    "subject",
    ["Printer broken\n", "Printer broken\r\n", "Printer\r\nBcc: eve@evil.example", "a\u2028b"],
)
async def test_a_subject_with_line_breaks_is_one_header_line(
    smtp_server: tuple[MailSink, int], subject: str
) -> None:
    # a trailing line break used to pass Python's header check and end the header block:
    # Date, Message-ID and the MIME headers became body text
    sink, port = smtp_server
    notifications = NotificationSystem(retry_policy=RetryPolicy.NONE)
    notifications.add_channel("email", f"smtp://127.0.0.1:{port}?from=app@example.com")

    result = await notifications.notify(subject=subject, body="We are on it.", to="a@example.com")

    assert result.ok, result.failed
    [mail] = sink.messages
    flat = " ".join(subject.split())
    assert mail.message["Subject"] == flat
    assert result["email"].notification is not None
    assert result["email"].notification.subject == flat
    assert mail.message["Message-ID"] and mail.message["Date"]
    assert mail.message["Bcc"] is None and mail.recipients == ["a@example.com"]
    assert mail.message.get_content().strip() == "We are on it."


@pytest.mark.parametrize("field", ["sender", "reply_to"])
@pytest.mark.parametrize(
    "value", ["app@example.com\n", "app@example.com\r\n", "a@b.c\r\nBcc: e@f.g"]
)
def test_a_sender_or_reply_to_with_a_line_break_is_refused_when_configured(
    field: str, value: str
) -> None:
    options = {"sender": "app@example.com", field: value}
    with pytest.raises(ConfigurationError, match="one line"):
        EmailChannel("127.0.0.1", 25, **options)  # type: ignore[arg-type]
    name = "from" if field == "sender" else field
    with pytest.raises(ConfigurationError, match="one line"):
        EmailChannel.from_url(
            f"smtp://127.0.0.1:25?from=app@example.com&{name}={quote(value, safe='@')}"
        )


async def test_a_plus_in_the_url_sender_stays_a_plus(smtp_server: tuple[MailSink, int]) -> None:
    # parse_qs read the query as form data and made "alerts+ops@" "alerts ops@"
    sink, port = smtp_server
    notifications = NotificationSystem(retry_policy=RetryPolicy.NONE)
    channel = notifications.add_channel(
        "email", f"smtp://127.0.0.1:{port}?from=alerts+ops@example.com&reply_to=a%2Bb@example.com"
    )

    result = await notifications.notify(subject="s", body="b", to="ana@example.com")

    assert isinstance(channel, EmailChannel) and channel.reply_to == "a+b@example.com"
    assert result.ok, result.failed
    assert sink.messages[0].sender == "alerts+ops@example.com"
    assert sink.messages[0].message["From"] == "alerts+ops@example.com"
    spaced = EmailChannel.from_url("smtp://h?from=Alerts%20Team%20%3Ca@example.com%3E")
    assert spaced.sender == "Alerts Team <a@example.com>"


async def test_close_cuts_off_an_email_being_sent(slow_smtp_server: tuple[SlowSink, int]) -> None:
    # EmailChannel had no close(): an email still being sent after the grace ran on
    # (and was delivered) after close() had returned
    sink, port = slow_smtp_server
    sink.data = 10.0
    notifications = NotificationSystem(retry_policy=RetryPolicy.fixed(max_attempts=3))
    notifications.add_channel("email", EmailChannel("127.0.0.1", port, sender="a@example.com"))
    pending = asyncio.ensure_future(notifications.notify(subject="s", body="b", to="x@example.com"))
    for _ in range(500):
        if sink.data_started.is_set():
            break
        await asyncio.sleep(0.01)
    started = time.monotonic()

    await notifications.close(grace=0.2)

    assert time.monotonic() - started < 5
    assert pending.done()
    result = (await pending)["email"]
    assert result.status == "failed" and isinstance(result.error, ClosedError)
    assert result.attempts == 1  # cut off, not retried
    assert sink.messages == []


async def test_email_channel_close_drops_the_connections_of_messages_in_flight(
    slow_smtp_server: tuple[SlowSink, int],
) -> None:
    sink, port = slow_smtp_server
    sink.data = 10.0
    channel = EmailChannel("127.0.0.1", port, sender="a@example.com")
    sending = asyncio.ensure_future(channel.send(Notification("email", "x@example.com", "s", "b")))
    for _ in range(500):
        if sink.data_started.is_set():
            break
        await asyncio.sleep(0.01)

    await channel.close()

    with pytest.raises(NotificationError):
        await asyncio.wait_for(sending, 5)


async def test_a_slow_greeting_is_not_taken_out_of_the_rate_limit_spacing(
    slow_smtp_server: tuple[SlowSink, int],
) -> None:
    # the slot used to be taken before connecting: the first message, slow to get
    # through EHLO, left only part of the interval before the second one arrived
    sink, port = slow_smtp_server
    sink.greeting = 0.5
    notifications = NotificationSystem(retry_policy=RetryPolicy.NONE)
    notifications.add_channel(
        "email",
        EmailChannel("127.0.0.1", port, sender="a@example.com"),
        rate_limit=RateLimit(1, 0.8),
    )

    results = await asyncio.gather(
        *(notifications.notify(subject="s", body=str(n), to="x@example.com") for n in range(2))
    )
    await notifications.close()

    assert all(result.ok for result in results)
    first, second = sorted(mail.at for mail in sink.messages)
    assert second - first >= 0.65  # 0.8 s apart at the sender; it was 0.3 s
