"""A server certificate that fails verification is a permanent failure, said plainly:
every try fails the same way (it was retried as transient, each try failing again)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pepperpy.event import ConfigurationError, EmailChannel, NotificationSystem, RetryPolicy
from tests.notifications.servers import (
    MailSink,
    self_signed_cert,
    server_tls_context,
    smtp_running,
)


class CountingSink(MailSink):
    """Counts the sessions that got as far as EHLO (each try says EHLO before STARTTLS)."""

    def __init__(self) -> None:
        super().__init__()
        self.ehlos = 0

    async def handle_EHLO(
        self, server: object, session: object, envelope: object, hostname: str, responses: list[str]
    ) -> list[str]:
        self.ehlos += 1
        session.host_name = hostname  # type: ignore[attr-defined]
        return responses


@pytest.fixture
def self_signed_server(tmp_path: Path) -> Iterator[tuple[CountingSink, int]]:
    cert, key = self_signed_cert(tmp_path)
    sink = CountingSink()
    tls = server_tls_context(cert, key)
    with smtp_running(sink, tls_context=tls, require_starttls=True) as port:
        yield sink, port


@pytest.mark.parametrize("starttls", [True, None])
async def test_an_untrusted_starttls_certificate_fails_once_saying_what_to_do(
    self_signed_server: tuple[CountingSink, int], starttls: bool | None
) -> None:
    sink, port = self_signed_server
    notifications = NotificationSystem(retry_policy=RetryPolicy.fixed(max_attempts=3))
    notifications.add_channel(
        "email", EmailChannel("127.0.0.1", port, sender="a@example.com", starttls=starttls)
    )

    result = await notifications.notify(subject="s", body="b", to="x@example.com")
    await notifications.close()

    failed = result["email"]
    assert failed.status == "failed"
    assert failed.attempts == 1  # not retried: it was 3 tries, each failing the same way
    assert sink.ehlos == 1
    assert isinstance(failed.error, ConfigurationError)
    message = str(failed.error)
    assert f"127.0.0.1:{port}" in message
    assert "certificate" in message and "STARTTLS" in message
    assert "self-signed certificate" in message  # what the check found
    assert "retrying will not help" in message
    assert "tls_context" in message
    assert sink.messages == []
    assert notifications.dead_letters[-1].attempts == 1


async def test_an_untrusted_smtps_certificate_is_not_retried_either(tmp_path: Path) -> None:
    cert, key = self_signed_cert(tmp_path)
    sink = MailSink()
    with smtp_running(sink, ssl_context=server_tls_context(cert, key)) as port:
        notifications = NotificationSystem(retry_policy=RetryPolicy.fixed(max_attempts=3))
        notifications.add_channel("email", f"smtps://127.0.0.1:{port}?from=a@example.com")
        result = await notifications.notify(subject="s", body="b", to="x@example.com")
        await notifications.close()

    failed = result["email"]
    assert failed.attempts == 1 and isinstance(failed.error, ConfigurationError)
    assert "smtps" in str(failed.error) and "retrying will not help" in str(failed.error)
    assert sink.messages == []
