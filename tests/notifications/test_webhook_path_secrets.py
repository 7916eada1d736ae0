"""Well-known webhook services put the secret in the URL's path (Slack's
``/services/T/B/SECRET``, Discord's ``/api/webhooks/ID/TOKEN``, Teams, Zapier, IFTTT), and
so do many others (a UUID, a long random key). Wherever a webhook URL is shown (errors,
dead letters, log records, httpx's own request log, the repr) those segments are hidden,
the host and the rest of the path kept; ``label=`` shows a name instead of the URL."""

from __future__ import annotations

import asyncio
import logging

import pytest

from pepperpy.event import (
    ConfigurationError,
    NotificationDeadLetter,
    NotificationSystem,
    RetryPolicy,
    WebhookChannel,
)
from tests.notifications.servers import HttpSink, Reply, Request, free_port

TOKEN = "xoxb1234abcdEFGH5678ijkl"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "https://hooks.slack.com/services/T024BE7LD/B01ABCD2EFG/abcdefghijklmnopqrstuvwx",
            "https://hooks.slack.com/services/T024BE7LD/B01ABCD2EFG/***",
        ),
        (  # a short secret, a trailing slash, the host in capitals
            "https://HOOKS.slack.com/services/T0/B0/XXXX/",
            "https://HOOKS.slack.com/services/T0/B0/***/",
        ),
        (
            "https://hooks.slack.com/workflows/T024BE7LD/A05ABCDEF/123456789012345678/abcdefgh",
            "https://hooks.slack.com/workflows/T024BE7LD/A05ABCDEF/123456789012345678/***",
        ),
        (
            "https://discord.com/api/webhooks/123456789012345678/aBcD-eFgH_ijkl",
            "https://discord.com/api/webhooks/123456789012345678/***",
        ),
        (
            "https://canary.discordapp.com/api/v10/webhooks/123456789012345678/abcdefgh/slack",
            "https://canary.discordapp.com/api/v10/webhooks/123456789012345678/***/slack",
        ),
        (
            "https://acme.webhook.office.com/webhookb2/0e5f9a1b-1111-4000-8000-000000000001"
            "@7a1b2c3d-2222-4000-8000-000000000002/IncomingWebhook/"
            "9f8e7d6c5b4a39281706f5e4d3c2b1a0/0e5f9a1b-3333-4000-8000-000000000003/V2abcdEF",
            "https://acme.webhook.office.com/webhookb2/***/IncomingWebhook/***/***/***",
        ),
        (
            "https://chat.googleapis.com/v1/spaces/AAAAb1c2d3e/messages?key=AIzaSyDdI0h&token=t0k",
            "https://chat.googleapis.com/v1/spaces/AAAAb1c2d3e/messages?key=***&token=***",
        ),
        (  # a self-hosted Mattermost: the key is found by its look
            "https://chat.example.com/hooks/xwz9q8k4h7f3j2m1n6p5r8t0yb",
            "https://chat.example.com/hooks/***",
        ),
        (
            "https://hooks.zapier.com/hooks/catch/123456/abc1de/",
            "https://hooks.zapier.com/hooks/catch/***/***/",
        ),
        (
            "https://maker.ifttt.com/trigger/order_shipped/with/key/dK3xZ9q",
            "https://maker.ifttt.com/trigger/order_shipped/with/key/***",
        ),
        (
            "https://api.telegram.org/bot123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/sendMessage",
            "https://api.telegram.org/***/sendMessage",
        ),
        (
            "https://webhook.site/550e8400-e29b-41d4-a716-446655440000",
            "https://webhook.site/***",
        ),
        (  # random letters only, and a percent-encoded key
            "https://example.com/in/aBcDeFgHiJkLmNoPqRsT/%61%62%63123456789012345",
            "https://example.com/in/***/***",
        ),
        (  # a user part without a password is a token
            "https://tok3nabc@example.com/in",
            "https://***@example.com/in",
        ),
        (  # names a person chose are shown: words, versions, camelCase, long numbers
            "https://example.com/api/v2/customer-notifications/OrderShippedWebhook/12345678901",
            "https://example.com/api/v2/customer-notifications/OrderShippedWebhook/12345678901",
        ),
    ],
)
def test_the_repr_hides_path_secrets_and_keeps_the_shape(url: str, shown: str) -> None:
    assert repr(WebhookChannel(url)) == f"WebhookChannel({shown})"


def _reply_redirect(location: str) -> Reply:
    async def reply(request: Request, writer: asyncio.StreamWriter) -> None:
        writer.write(
            f"HTTP/1.1 308 X\r\nLocation: {location}\r\nContent-Length: 0\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        await writer.drain()

    return reply


def _no_token(text: str) -> None:
    assert TOKEN not in text


def _causes(error: BaseException | None) -> str:
    texts = []
    while error is not None:
        texts.append(f"{error} {error!r}")
        error = error.__cause__
    return " ".join(texts)


@pytest.mark.parametrize("answer", ["500", "refused", "redirect"])
async def test_a_failed_delivery_never_shows_a_path_secret(
    http_server: HttpSink, caplog: pytest.LogCaptureFixture, answer: str
) -> None:
    base = http_server.url if answer != "refused" else f"http://127.0.0.1:{free_port()}"
    url = f"{base}/services/T0/B0/{TOKEN}"
    http_server.answer([500])
    if answer == "redirect":  # to the same secret, with a trailing slash
        http_server.reply = _reply_redirect(f"/services/T0/B0/{TOKEN}/")
    notifications = NotificationSystem(retry_policy=RetryPolicy.fixed(max_attempts=2))
    channel = WebhookChannel(url)
    notifications.add_channel("hook", channel)

    # every logger at INFO: ours, and httpx's own request log (httpcore's DEBUG log of
    # the answers' headers: test_webhook_debug_log.py)
    with caplog.at_level(logging.INFO):
        result = await notifications.notify(channels=["hook"], body="b")
    await notifications.close()

    error = result["hook"].error
    assert error is not None
    assert f"{base}/services/T0/B0/***" in str(error)
    if answer == "redirect":
        assert f"a redirect to '{base}/services/T0/B0/***/'" in str(error)
    _no_token(_causes(error))
    letter = notifications.dead_letters[-1]
    assert isinstance(letter, NotificationDeadLetter)
    _no_token(letter.reason)
    _no_token(_causes(letter.exception))
    _no_token(repr(channel))
    assert caplog.records  # the failure was logged ...
    _no_token(caplog.text)  # ... without the secret
    for record in caplog.records:
        _no_token(record.getMessage())
    if answer != "refused":
        assert http_server.requests[0].path == f"/services/T0/B0/{TOKEN}"  # sent as given
        logged = [r.getMessage() for r in caplog.records if r.name == "httpx"]
        assert logged and all(f"{base}/services/T0/B0/***" in line for line in logged)


async def test_a_label_is_shown_instead_of_the_url(
    http_server: HttpSink, caplog: pytest.LogCaptureFixture
) -> None:
    http_server.reply = _reply_redirect(f"{http_server.url}/private/{TOKEN}")
    notifications = NotificationSystem(retry_policy=RetryPolicy.NONE)
    channel = WebhookChannel(f"{http_server.url}/private/short", label="ops-alerts")
    notifications.add_channel("hook", channel)

    with caplog.at_level(logging.INFO):
        result = await notifications.notify(channels=["hook"], body="b")
    await notifications.close()

    message = str(result["hook"].error)
    assert message.startswith("webhook 'ops-alerts' answered 308, a redirect")
    assert repr(channel) == "WebhookChannel('ops-alerts')"
    assert channel.label == "ops-alerts"
    letter = notifications.dead_letters[-1]
    assert isinstance(letter, NotificationDeadLetter)
    for text in (message, letter.reason, caplog.text, repr(channel)):
        assert "/private/" not in text and TOKEN not in text
    assert any("'ops-alerts'" in r.getMessage() for r in caplog.records if r.name == "httpx")


@pytest.mark.parametrize("label", ["", "  ", 7])
def test_a_label_must_be_a_non_empty_str(label: object) -> None:
    with pytest.raises(ConfigurationError, match="label"):
        WebhookChannel("https://example.com/in", label=label)  # type: ignore[arg-type]


def test_a_url_httpx_cannot_send_to_is_refused_when_the_channel_is_made() -> None:
    # it passed the checks, and every delivery failed with httpx's InvalidURL, retried
    with pytest.raises(ConfigurationError, match="IDNA") as caught:
        WebhookChannel(f"https://\u2603\u2603.com/in/{TOKEN}")
    _no_token(str(caught.value))
