"""Headers configured on a webhook channel: checked when the channel is made, and sent as
given to a real HTTP server on loopback."""

from __future__ import annotations

from typing import Any

import pytest

from pepperpy.event import ConfigurationError, NotificationSystem, RetryPolicy, WebhookChannel
from tests.notifications.servers import HttpSink


@pytest.mark.parametrize(
    ("headers", "problem"),
    [
        ({"X-Team": "zoë"}, "printable ASCII"),
        ({"X-Team": "ops\r\nX-Injected: 1"}, "line breaks"),
        ({"X-Team": "ops\nX-Injected: 1"}, "line breaks"),
        ({"X-Team": "a\x00b"}, "printable ASCII"),
        ({"X-Team": " ops"}, "leading or trailing"),
        ({"X-Team": 5}, "must be a str"),
        ({"Bad Name": "x"}, "not an HTTP token"),
        ({"X-Team:": "x"}, "not an HTTP token"),
        ({"": "x"}, "not an HTTP token"),
        ({"Content-Length": "5"}, "set by the channel"),
        ({"transfer-encoding": "chunked"}, "set by the channel"),
        (["X-Team", "ops"], "must be a mapping"),
    ],
)
async def test_a_header_no_request_could_carry_is_refused_when_the_channel_is_made(
    http_server: HttpSink, headers: Any, problem: str
) -> None:
    with pytest.raises(ConfigurationError, match=problem):
        WebhookChannel(http_server.url, headers=headers)
    assert http_server.requests == []


async def test_configured_headers_reach_the_receiver_as_given(http_server: HttpSink) -> None:
    headers = {"Authorization": "Bearer t0k3n", "X-Team": "ops\tand  on-call", "X-Empty": ""}
    notifications = NotificationSystem(retry_policy=RetryPolicy.fixed(max_attempts=2))
    notifications.add_channel("hook", WebhookChannel(http_server.url + "/in", headers=headers))

    result = await notifications.notify(channels=["hook"], body="b")

    assert result.ok, result["hook"].error
    [request] = http_server.requests
    assert request.headers["authorization"] == "Bearer t0k3n"
    assert request.headers["x-team"] == "ops\tand  on-call"
    assert request.headers["x-empty"] == ""
    await notifications.close()
