"""Control characters in a subject (a NUL, an escape sequence, DEL, C1 controls) are not
header text: the subject a real SMTP server (aiosmtpd on loopback) receives has none."""

from __future__ import annotations

import pytest

from pepperpy.event import NotificationSystem, RetryPolicy
from tests.notifications.servers import MailSink


@pytest.mark.parametrize(
    ("subject", "received"),
    [
        ("Order\x00 42 shipped", "Order 42 shipped"),
        ("\x1b[31mOrder 42\x1b[0m shipped", "[31mOrder 42[0m shipped"),
        ("Order 42\x7f\x07 shipped\x08", "Order 42 shipped"),
        ("Zoë\x9b ordered", "Zoë ordered"),  # a C1 control, in an encoded word
        ("Order\t42\x0b\x0cshipped", "Order 42 shipped"),  # whitespace: one space
    ],
)
async def test_a_subject_reaches_the_server_without_control_characters(
    smtp_server: tuple[MailSink, int], subject: str, received: str
) -> None:
    sink, port = smtp_server
    notifications = NotificationSystem(retry_policy=RetryPolicy.NONE)
    notifications.add_channel("email", f"smtp://127.0.0.1:{port}?from=app@example.com")

    result = await notifications.notify(subject=subject, body="b", to="a@example.com")

    assert result.ok, result.failed
    [mail] = sink.messages
    assert mail.message["Subject"] == received
    await notifications.close()
