"""EmailChannel and WebhookChannel made directly (not from a URL) check their server,
flags and secret when they are made, as the URL forms do.

Found using the channels as an application configured from environment variables would:
``EmailChannel(..., starttls="true")`` was neither ``True`` nor ``None`` to aiosmtplib,
so it turned STARTTLS off, even the upgrade a server offers, and the login and message
went in clear; ``port=0``, a negative port, ``"smtp.example.com:587"`` as the host or an
empty host failed every try, retried; ``WebhookChannel(secret=5)`` failed every try
(hmac's ``TypeError``), and ``secret=""`` (``os.environ.get("HOOK_SECRET", "")`` with
the variable unset) signed every request with an empty key anyone can sign with.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pepperpy.event import (
    AppriseChannel,
    ConfigurationError,
    EmailChannel,
    NotificationSystem,
    WebhookChannel,
)
from tests.notifications.servers import MailSink, self_signed_cert, server_tls_context, smtp_running

SENDER = "alerts@example.com"


@pytest.mark.parametrize("value", ["true", "false", 1, 0])
def test_starttls_that_is_not_a_bool_is_a_type_error(value: object) -> None:
    with pytest.raises(TypeError, match=r"EmailChannel starttls must be True, False or None, got"):
        EmailChannel("127.0.0.1", 2525, sender=SENDER, starttls=value)  # type: ignore[arg-type]


@pytest.mark.parametrize("flag", ["tls", "validate_certs"])
def test_tls_and_validate_certs_must_be_bools(flag: str) -> None:
    options: dict[str, Any] = {flag: "false"}
    with pytest.raises(TypeError, match=rf"EmailChannel {flag} must be True or False, got 'false'"):
        EmailChannel("127.0.0.1", 2525, sender=SENDER, **options)


async def test_a_server_offering_starttls_is_never_written_to_in_clear(tmp_path: Path) -> None:
    """The real effect: a string ``starttls`` went out without TLS to a server offering
    it; now it is refused, and ``starttls=True`` upgrades."""
    sink = MailSink()
    cert, key = self_signed_cert(tmp_path)
    with smtp_running(sink, tls_context=server_tls_context(cert, key)) as port:
        with pytest.raises(TypeError, match="starttls"):
            EmailChannel("127.0.0.1", port, sender=SENDER, starttls="true")  # type: ignore[arg-type]
        notifications = NotificationSystem()
        notifications.add_channel(
            "email",
            EmailChannel("127.0.0.1", port, sender=SENDER, starttls=True, validate_certs=False),
        )
        result = await notifications.notify(
            channels=["email"], subject="s", body="b", to="ana@example.com"
        )
        await notifications.close()
    assert result.ok, result["email"].error
    assert sink.tls_used == [True]


@pytest.mark.parametrize(
    ("port", "error", "message"),
    [
        (
            0,
            ConfigurationError,
            r"port must be a number from 1 to 65535 \(or None for the default\), got 0",
        ),
        (-5, ConfigurationError, r"port must be a number from 1 to 65535 .*got -5"),
        (65536, ConfigurationError, r"port must be a number from 1 to 65535 .*got 65536"),
        ("587", TypeError, r"port must be an int or None, got '587'"),
        (True, TypeError, r"port must be an int or None, got True"),
    ],
)
def test_a_port_no_connection_could_use_is_refused(
    port: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        EmailChannel("127.0.0.1", port, sender=SENDER)


@pytest.mark.parametrize(
    ("host", "error", "message"),
    [
        ("smtp.example.com:587", ConfigurationError, r"give the port as port=, not in the host"),
        ("[::1]", ConfigurationError, r"an IPv6 address goes without brackets"),
        ("", ConfigurationError, r"host must be a host name or an IP address, got ''"),
        ("smtp example.com", ConfigurationError, r"host must be a host name or an IP address"),
        (None, TypeError, r"host must be a str, got None"),
    ],
)
def test_a_host_no_connection_could_use_is_refused(
    host: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        EmailChannel(host, 25, sender=SENDER)


@pytest.mark.parametrize("host", ["smtp.example.com", "127.0.0.1", "::1", "localhost"])
def test_real_hosts_are_kept(host: str) -> None:
    assert EmailChannel(host, 587, sender=SENDER).host == host


def test_an_ipv6_url_still_makes_a_channel() -> None:
    channel = EmailChannel.from_url("smtp://[::1]:2525?from=alerts@example.com")
    assert (channel.host, channel.port) == ("::1", 2525)


def test_a_login_that_is_not_a_str_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="EmailChannel password must be a str or None, got int"):
        EmailChannel("127.0.0.1", 25, sender=SENDER, username="ana", password=1234)  # type: ignore[arg-type]


def test_a_webhook_secret_of_the_wrong_type_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="webhook secret must be a str, bytes or None, got int"):
        WebhookChannel("https://hooks.example.com/in", secret=5)  # type: ignore[arg-type]


@pytest.mark.parametrize("secret", ["", b""])
def test_an_empty_webhook_secret_is_refused(secret: str | bytes) -> None:
    with pytest.raises(ConfigurationError, match=r"webhook secret of .* is empty.*secret=None"):
        WebhookChannel("https://hooks.example.com/in", secret=secret)


def test_webhook_secrets_that_sign_are_kept() -> None:
    assert "signed" in repr(WebhookChannel("https://hooks.example.com/in", secret="s3cret"))
    assert "signed" in repr(WebhookChannel("https://hooks.example.com/in", secret=b"\x00k"))


def test_a_tls_context_that_is_not_one_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="EmailChannel tls_context must be an ssl.SSLContext"):
        EmailChannel("127.0.0.1", 25, sender=SENDER, tls_context="/etc/ssl/ca.pem")  # type: ignore[arg-type]


@pytest.mark.parametrize("urls", [5, b"pover://user@token", None])
def test_apprise_urls_of_the_wrong_type_are_a_type_error(urls: Any) -> None:
    with pytest.raises(TypeError, match="AppriseChannel urls must be a str or a list of str"):
        AppriseChannel(urls)


def test_an_apprise_url_that_is_no_str_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="AppriseChannel URLs must be str, got 5"):
        AppriseChannel(["json://localhost/hook", 5])  # type: ignore[list-item]


@pytest.mark.parametrize("value", ["no", "false", 0])
def test_builtin_templates_must_be_a_bool(value: object) -> None:
    with pytest.raises(TypeError, match="builtin_templates must be True or False"):
        NotificationSystem(builtin_templates=value)  # type: ignore[arg-type]
