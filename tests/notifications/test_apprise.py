"""Apprise URLs delivered to a real local HTTP endpoint (apprise's ``json://`` service)."""

from __future__ import annotations

import base64
import json

import pytest

from pepperpy.event import (
    AppriseChannel,
    ConfigurationError,
    NotificationSystem,
    RecipientError,
    RetryPolicy,
)
from tests.notifications.servers import HttpSink

pytest.importorskip("apprise")

FAST_RETRY = RetryPolicy.fixed(max_attempts=2, base_delay=0.0)


async def test_apprise_url_delivers_to_a_local_endpoint(http_server: HttpSink) -> None:
    notifications = NotificationSystem(retry_policy=FAST_RETRY)
    notifications.add_channel("push", f"json://127.0.0.1:{http_server.port}/push")
    notifications.add_template("alert", "Disk {{ disk }} at {{ pct }}%", subject="Alert")

    result = await notifications.notify(channels=["push"], template="alert", disk="/", pct=93)

    assert result.ok, result.failed
    [request] = http_server.requests
    assert request.path == "/push"
    payload = json.loads(request.body)
    assert payload["title"] == "Alert"
    assert payload["message"] == "Disk / at 93%"


async def test_recipient_placeholder_is_filled_per_notification(http_server: HttpSink) -> None:
    notifications = NotificationSystem(retry_policy=FAST_RETRY)
    notifications.add_channel(
        "sms", AppriseChannel(f"json://127.0.0.1:{http_server.port}/sms/{{recipient}}")
    )
    notifications.add_template("code", "Your code is {{ code }}", channel="sms")

    first = await notifications.notify(
        channels=["sms"], template="code", user={"phone": "+15550001"}, code="123"
    )
    second = await notifications.notify(
        channels=["sms"], template="code", user={"phone": "+15550002"}, code="456"
    )
    missing = await notifications.notify(channels=["sms"], template="code", user={}, code="1")

    assert first.ok and second.ok
    assert [r.path for r in http_server.requests] == ["/sms/+15550001", "/sms/+15550002"]
    assert first["sms"].notification.recipient == "+15550001"  # type: ignore[union-attr]
    assert "user.phone" in str(missing["sms"].error)


async def test_apprise_failure_is_retried_with_the_reason(http_server: HttpSink) -> None:
    http_server.answer([500])
    notifications = NotificationSystem(retry_policy=FAST_RETRY)
    notifications.add_channel("push", f"json://127.0.0.1:{http_server.port}/push")

    result = await notifications.notify(channels=["push"], body="x")

    assert result["push"].attempts == 2
    assert len(http_server.requests) == 2
    assert "apprise delivery via json failed" in notifications.dead_letters[-1].reason


def test_unknown_scheme_is_a_configuration_error() -> None:
    notifications = NotificationSystem()
    with pytest.raises(ConfigurationError, match="nosuchservice"):
        notifications.add_channel("push", "nosuchservice://x")


async def test_placeholder_without_any_address_is_a_recipient_error(
    http_server: HttpSink,
) -> None:
    notifications = NotificationSystem(retry_policy=FAST_RETRY)
    # "whatsapp" is no known kind, so only to= can fill the {recipient} slot
    notifications.add_channel(
        "whatsapp", AppriseChannel(f"json://127.0.0.1:{http_server.port}/wa/{{recipient}}")
    )

    missing = await notifications.notify(body="x", user={"phone": "+1"})
    given = await notifications.notify(body="x", to="+1999")

    assert isinstance(missing["whatsapp"].error, RecipientError)
    assert missing["whatsapp"].attempts == 1
    assert given.ok and [r.path for r in http_server.requests] == ["/wa/+1999"]


@pytest.mark.parametrize(
    "phone",
    [
        "+15550002222, +15559998888",
        "+15550002222 +15559998888",
        "+15550002222;+15559998888",
        "+15550002222/+15559998888",
        "[+15550002222]",
        "+1 555 000 2222",
        "+1-555-000-2222",
    ],
)
async def test_a_phone_number_from_user_data_is_one_sms_target(
    http_server: HttpSink, phone: str
) -> None:
    # SMSEagle is a self-hosted SMS gateway: apprise posts one request per target number
    notifications = NotificationSystem(retry_policy=RetryPolicy.NONE)
    notifications.add_channel(
        "sms",
        AppriseChannel(
            f"smseagle://token@127.0.0.1:{http_server.port}/{{recipient}}?batch=no", kind="sms"
        ),
    )

    result = await notifications.notify(channels=["sms"], body="x", user={"phone": phone})

    assert isinstance(result["sms"].error, RecipientError), result["sms"]
    assert "not one phone number" in str(result["sms"].error)
    assert result["sms"].attempts == 1
    assert http_server.requests == []


async def test_a_well_formed_phone_number_reaches_the_gateway_once(
    http_server: HttpSink,
) -> None:
    notifications = NotificationSystem(retry_policy=RetryPolicy.NONE)
    notifications.add_channel(
        "sms", AppriseChannel(f"smseagle://token@127.0.0.1:{http_server.port}/{{recipient}}")
    )

    await notifications.notify(channels=["sms"], body="x", user={"phone": "+15550002222"})

    [request] = http_server.requests  # (the sink's reply is no SMSEagle answer; not our point)
    assert json.loads(request.body)["params"]["to"] == "+15550002222"


@pytest.mark.parametrize(
    "token", ["alerts,secrets", "alerts secrets", "alerts;secrets", "alerts/secrets", "a%2Cb"]
)
async def test_a_push_target_from_user_data_cannot_add_targets(
    http_server: HttpSink, token: str
) -> None:
    # a self-hosted ntfy server: apprise posts once per topic in the URL
    notifications = NotificationSystem(retry_policy=RetryPolicy.NONE)
    notifications.add_channel(
        "push", AppriseChannel(f"ntfy://127.0.0.1:{http_server.port}/{{recipient}}")
    )

    result = await notifications.notify(channels=["push"], body="x", to=token)

    assert isinstance(result["push"].error, RecipientError), result["push"]
    assert "not one target" in str(result["push"].error)
    assert http_server.requests == []


async def test_an_at_sign_in_a_push_target_stays_inside_the_target(
    http_server: HttpSink,
) -> None:
    notifications = NotificationSystem(retry_policy=RetryPolicy.NONE)
    notifications.add_channel(
        "push",
        AppriseChannel(f"ntfy://{{recipient}}:pw@127.0.0.1:{http_server.port}/alerts"),
    )

    result = await notifications.notify(channels=["push"], body="x", to="ana@evil.example")

    assert result.ok, result.failed
    [request] = http_server.requests  # still our server: "@" did not end the user part
    assert json.loads(request.body)["topic"] == "alerts"
    basic = request.headers["authorization"].removeprefix("Basic ")
    assert base64.b64decode(basic) == b"ana@evil.example:pw"


@pytest.mark.parametrize("token", [".", "..", "..."])
async def test_a_dot_segment_recipient_cannot_reach_another_endpoint(
    http_server: HttpSink, token: str
) -> None:
    # "." and ".." passed the character check and were resolved as path segments:
    # json://host/users/{recipient} posted to /users/ or / instead of one user's path
    notifications = NotificationSystem(retry_policy=RetryPolicy.NONE)
    notifications.add_channel(
        "push", AppriseChannel(f"json://127.0.0.1:{http_server.port}/users/{{recipient}}")
    )

    refused = await notifications.notify(channels=["push"], body="x", to=token)
    dotted = await notifications.notify(channels=["push"], body="x", to="device.1")

    assert isinstance(refused["push"].error, RecipientError), refused["push"]
    assert "only dots" in str(refused["push"].error)
    assert dotted.ok and [r.path for r in http_server.requests] == ["/users/device.1"]
