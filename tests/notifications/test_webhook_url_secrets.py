"""A webhook URL's query is its credentials more often than not (``?code=`` of an Azure
function, ``?sig=`` of a Teams workflow, ``?key=``): failures against a real HTTP server
on loopback never show its values, in the error, the dead letter, the log or the repr."""

from __future__ import annotations

import logging

import pytest

from pepperpy.event import ConfigurationError, NotificationSystem, RetryPolicy, WebhookChannel
from tests.notifications.servers import HttpSink, free_port

SECRETS = ("s3cr3t-code", "s1g-value", "k3y-value")
QUERY = f"?api-version=1&code={SECRETS[0]}&sig={SECRETS[1]}&key={SECRETS[2]}&flag"
SHOWN = "?api-version=***&code=***&sig=***&key=***&flag"


def _no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


@pytest.mark.parametrize("answer", ["500", "refused"])
async def test_a_failed_delivery_does_not_show_the_query_values(
    http_server: HttpSink, caplog: pytest.LogCaptureFixture, answer: str
) -> None:
    http_server.answer([500])
    base = http_server.url if answer == "500" else f"http://127.0.0.1:{free_port()}"
    url = f"{base}/hook{QUERY}"
    notifications = NotificationSystem(retry_policy=RetryPolicy.fixed(max_attempts=2))
    channel = WebhookChannel(url)
    notifications.add_channel("hook", channel)

    with caplog.at_level(logging.INFO, logger="pepperpy.event"):
        result = await notifications.notify(channels=["hook"], body="b")

    error = result["hook"].error
    assert error is not None
    assert f"{base}/hook{SHOWN}" in str(error)
    _no_secret(str(error))
    _no_secret(notifications.dead_letters[-1].reason)
    _no_secret(repr(channel))
    assert caplog.records  # the failure was logged ...
    _no_secret(caplog.text)  # ... without the secrets
    if answer == "500":
        assert len(http_server.requests) == 2
        assert http_server.requests[0].path == f"/hook{QUERY}"  # sent as configured
    await notifications.close()


def test_a_refused_url_does_not_show_the_query_values() -> None:
    with pytest.raises(ConfigurationError, match="has no host") as caught:
        WebhookChannel(f"https://:443/in{QUERY}")
    _no_secret(str(caught.value))
    assert SHOWN in str(caught.value)
