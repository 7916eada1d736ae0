"""apprise writes each plugin's request URL to the ``apprise`` logger at DEBUG
(``JSON POST URL: http://host/hook/KEY``, Telegram's ``.../bot<TOKEN>/sendMessage``) and
urllib3 the request line under it (``"POST /hook/KEY HTTP/1.1" 500``): an application
logging at DEBUG kept the channel's credentials in its logs. While a channel lives, the
credentials of its URLs are hidden in those records, at every level, and in its errors.
"""

from __future__ import annotations

import gc
import logging

import pytest

from pepperpy.event import AppriseChannel, NotificationSystem, RetryPolicy
from pepperpy.event.notifications.channels.apprise import _secrets_of, hidden
from tests.notifications.servers import HttpSink

pytest.importorskip("apprise")

KEY = "xwz9q8k4h7f3j2m1n6p5r8t0yb"
PASSWORD = "hunter2-pw"


@pytest.mark.parametrize("answer", [200, 500])
async def test_a_deliverys_debug_log_hides_the_url_credentials(
    http_server: HttpSink, caplog: pytest.LogCaptureFixture, answer: int
) -> None:
    http_server.answer([answer])
    notifications = NotificationSystem(retry_policy=RetryPolicy.NONE)
    with caplog.at_level(logging.DEBUG):
        notifications.add_channel(
            "push", f"json://ops:{PASSWORD}@127.0.0.1:{http_server.port}/hook/{KEY}"
        )
        result = await notifications.notify(channels=["push"], body="disk full")
    await notifications.close()

    assert http_server.requests[0].path == f"/hook/{KEY}"  # sent as given
    assert result.ok is (answer == 200)
    messages = [record.getMessage() for record in caplog.records]
    by_apprise = [m for r, m in zip(caplog.records, messages, strict=True) if r.name == "apprise"]
    assert any(f"127.0.0.1:{http_server.port}/hook/***" in m for m in by_apprise), by_apprise
    for message in messages:
        assert KEY not in message and PASSWORD not in message, message
    if answer == 500:
        error = str(result["push"].error)
        assert KEY not in error and PASSWORD not in error


@pytest.mark.parametrize(
    ("url", "secret", "kept"),
    [
        (  # Telegram: the bot token is apprise's host part
            "tgram://123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/-1001234567890/",
            "AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw",
            "123456789",
        ),
        (
            "pover://uQiRzpo4DXghDmr9QzzfQu27cmVRsG@aqxtqz2gcqhpd7",
            "uQiRzpo4DXghDmr9QzzfQu27cmVRsG",
            "",
        ),
        ("json://ops:short1@hooks.example.com/in?token=abcd", "short1", "hooks.example.com"),
        ("json://hooks.example.com/in?token=abcd", "abcd", "hooks.example.com"),
    ],
)
def test_what_is_hidden(url: str, secret: str, kept: str) -> None:
    secrets = _secrets_of([url])
    line = f"POST URL: https://api.example.com/{secret}/send ({kept})"
    shown = hidden(line, secrets)
    assert secret not in shown
    assert kept in shown


def test_a_dropped_channel_stops_hiding_its_secrets(caplog: pytest.LogCaptureFixture) -> None:
    secret = "Zq8Xk2Lm9Pw4Rt7Yv1Nb"
    channel = AppriseChannel(f"json://hooks.example.com/{secret}")
    logger = logging.getLogger("apprise")
    with caplog.at_level(logging.DEBUG, logger="apprise"):
        logger.debug("sending to %s", secret)
        del channel
        gc.collect()
        logger.debug("sending to %s", secret)
    assert [r.getMessage() for r in caplog.records][-2:] == [
        "sending to ***",
        f"sending to {secret}",  # nobody's credential any more: left as logged
    ]
