"""Webhook URLs checked when the channel is made; redirects and Retry-After answers."""

from __future__ import annotations

import asyncio
import time
from email.utils import formatdate

import pytest

from pepperpy.event import (
    ConfigurationError,
    NotificationError,
    NotificationSystem,
    RetryPolicy,
    WebhookChannel,
)
from tests.notifications.servers import HttpSink, Request

#: three tries, no wait of its own, up to 5 s when the receiver asks for one
POLICY = RetryPolicy.exponential(max_attempts=3, base_delay=0.0, max_delay=5.0)


def _answers(sink: HttpSink, *answers: tuple[int, dict[str, str]]) -> None:
    """Answer each request with the next (status, headers); the last one repeats."""

    async def reply(request: Request, writer: asyncio.StreamWriter) -> None:
        status, headers = answers[min(len(sink.requests), len(answers)) - 1]
        extra = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        head = f"HTTP/1.1 {status} X\r\nContent-Length: 2\r\n{extra}Connection: close\r\n"
        writer.write(f"{head}\r\nok".encode())
        await writer.drain()

    sink.reply = reply


def _system(url: str, policy: RetryPolicy = POLICY) -> NotificationSystem:
    notifications = NotificationSystem(retry_policy=policy)
    notifications.add_channel("hooks", url)
    return notifications


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("https://", "has no host"),
        ("http://:80/x", "has no host"),
        ("https:///path", "has no host"),
        ("http://exa mple.com/", "whitespace or a control character"),
        ("https://h/\r\nX: y", "whitespace or a control character"),
        ("https://h/\tx", "whitespace or a control character"),
        ("http://h:99999/", "bad port"),
        ("http://h:port/", "bad port"),
    ],
)
def test_a_url_no_request_could_go_to_is_refused_at_once(url: str, problem: str) -> None:
    notifications = NotificationSystem()

    for make in (lambda: notifications.add_channel("hooks", url), lambda: WebhookChannel(url)):
        with pytest.raises(ConfigurationError, match="webhook URL") as caught:
            make()
        assert problem in str(caught.value)
        assert repr(url) in str(caught.value)


def test_the_password_of_a_refused_url_is_not_shown() -> None:
    with pytest.raises(ConfigurationError, match="has no host") as caught:
        WebhookChannel("https://user:hunter2@:443/in")

    assert "hunter2" not in str(caught.value)
    assert "***" in str(caught.value)


def test_good_urls_are_taken() -> None:
    for url in ("https://hooks.example.com/in?a=1", "HTTP://127.0.0.1:8080", "http://[::1]:9/x"):
        assert WebhookChannel(url).url == url


@pytest.mark.parametrize("status", [301, 302, 307, 308])
async def test_a_redirect_is_not_retried_and_names_its_location(
    http_server: HttpSink, status: int
) -> None:
    _answers(http_server, (status, {"Location": "https://elsewhere.example/in/"}))
    notifications = _system(http_server.url + "/in")

    result = await notifications.notify(body="hi")

    outcome = result["hooks"]
    assert not outcome.ok and outcome.attempts == 1
    assert len(http_server.requests) == 1  # the receiver got the POST once
    message = str(outcome.error)
    assert f"answered {status}, a redirect to 'https://elsewhere.example/in/'" in message
    assert "do not follow redirects" in message
    await notifications.close()


@pytest.mark.parametrize("status", [429, 503])
@pytest.mark.parametrize("form", ["seconds", "date"])
async def test_retry_after_is_waited_for(http_server: HttpSink, status: int, form: str) -> None:
    # an HTTP date has whole seconds: 2 s ahead is at least 1 s away
    value = "1" if form == "seconds" else formatdate(time.time() + 2, usegmt=True)
    _answers(http_server, (status, {"Retry-After": value}), (200, {}))
    notifications = _system(http_server.url + "/in")

    result = await notifications.notify(body="hi")

    assert result["hooks"].ok and result["hooks"].attempts == 2
    first, second = http_server.requests
    assert second.at - first.at >= 0.9  # what the receiver asked, not the policy's 0 s
    await notifications.close()


async def test_retry_after_past_the_policy_max_delay_fails_at_once(http_server: HttpSink) -> None:
    _answers(http_server, (429, {"Retry-After": "3600"}), (200, {}))
    notifications = _system(http_server.url + "/in")

    result = await notifications.notify(body="hi")

    outcome = result["hooks"]
    assert not outcome.ok and outcome.attempts == 1
    assert len(http_server.requests) == 1
    assert isinstance(outcome.error, NotificationError)
    assert "asked to be tried again in 3600s" in str(outcome.error)
    assert "max_delay (5s)" in str(outcome.error)
    await notifications.close()


async def test_a_malformed_retry_after_is_ignored(http_server: HttpSink) -> None:
    _answers(http_server, (429, {"Retry-After": "soon"}), (200, {}))
    notifications = _system(http_server.url + "/in")

    result = await notifications.notify(body="hi")

    assert result["hooks"].ok and result["hooks"].attempts == 2
    await notifications.close()
