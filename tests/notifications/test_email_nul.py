"""A NUL in an email's text, its HTML or a rendered template is dropped, never sent: no
message may carry one (RFC 5322 3.5, RFC 2045 2.7/2.8); it went out raw, in a 7bit part."""

from __future__ import annotations

from typing import Any

from pepperpy.event import EmailChannel, NotificationSystem, RetryPolicy
from tests.notifications.servers import MailSink, smtp_running


class RawSink(MailSink):
    """Keeps each message's bytes as they came off the wire, too."""

    def __init__(self) -> None:
        super().__init__()
        self.raw: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.raw.append(envelope.original_content)
        return await super().handle_DATA(server, session, envelope)


async def test_nul_is_dropped_from_text_html_and_templates() -> None:
    sink = RawSink()
    with smtp_running(sink) as port:
        notifications = NotificationSystem(retry_policy=RetryPolicy.NONE)
        notifications.add_channel("email", EmailChannel("127.0.0.1", port, sender="a@example.com"))
        notifications.add_template(
            "hello", "Hi {{ name }}!", subject="s", html="<p>Hi <b>{{ name }}</b></p>"
        )
        plain = await notifications.notify(subject="s", body="a\x00b", to="x@example.com")
        templated = await notifications.notify(
            template="hello", to="x@example.com", name="Ana\x00\x00Lu"
        )
        await notifications.close()

    assert plain.ok and templated.ok
    assert len(sink.raw) == 2
    assert all(b"\x00" not in raw for raw in sink.raw)
    text = sink.messages[0].message.get_content()
    assert text.rstrip() == "ab"
    both = sink.messages[1].message
    assert both.get_body(("plain",)).get_content().rstrip() == "Hi AnaLu!"  # type: ignore[union-attr]
    html = both.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "<b>AnaLu</b>" in html
