"""Channel and idempotency store URLs no connection could use are refused when given.

An unclosed IPv6 bracket raised urllib's bare ``ValueError("Invalid IPv6 URL")``, which
named no URL and was no ``ConfigurationError``; port 0 made an email channel use the
default port and a webhook retry a connection that can never be made; a Redis
idempotency store with a bad port or database was accepted, and then every keyed
delivery failed on it as if Redis were down.
"""

from __future__ import annotations

import pytest

from pepperpy.event import ConfigurationError, NotificationSystem
from pepperpy.event.notifications import EmailChannel, WebhookChannel


@pytest.mark.parametrize(
    "url",
    ["smtp://[::1?from=ops@example.com", "https://[::1/hook", "pover://[::1/s3cr3t-token"],
)
def test_an_unclosed_bracket_in_a_channel_url_is_a_configuration_error(url: str) -> None:
    notifications = NotificationSystem()

    with pytest.raises(ConfigurationError, match="Invalid IPv6 URL") as caught:
        notifications.add_channel("alerts", url)

    scheme = url.partition("://")[0]
    assert f"{scheme}://" in str(caught.value)
    assert "s3cr3t" not in str(caught.value)  # an apprise URL's path may be a token


def test_an_unclosed_bracket_made_directly_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="bad SMTP URL .*Invalid IPv6 URL"):
        EmailChannel.from_url("smtp://[::1?from=ops@example.com")
    with pytest.raises(ConfigurationError, match=r"bad webhook URL 'https://\[::1/hook'"):
        WebhookChannel("https://[::1/hook")


@pytest.mark.parametrize(
    "make",
    [
        lambda: EmailChannel.from_url("smtp://mail.example.com:0?from=ops@example.com"),
        lambda: WebhookChannel("https://hooks.example.com:0/deploy"),
    ],
)
def test_port_0_is_refused(make: object) -> None:
    with pytest.raises(ConfigurationError, match="bad port in .*: 0 "):
        make()  # type: ignore[operator]


def test_a_real_port_is_kept() -> None:
    assert EmailChannel.from_url("smtp://mail.example.com:2525?from=ops@example.com").port == 2525
    assert WebhookChannel("https://hooks.example.com:8443/deploy").url.endswith(":8443/deploy")


@pytest.mark.parametrize(
    ("url", "refused"),
    [
        ("redis://[::1/0", "Invalid IPv6 URL"),
        ("redis://127.0.0.1:x/0", "bad port 'x'"),
        ("redis://127.0.0.1:0/0", "bad port '0'"),
        ("redis://127.0.0.1:6379/orders", "no database number"),
        ("unix://", "names no socket"),
    ],
)
def test_a_bad_redis_idempotency_url_is_refused_when_given(url: str, refused: str) -> None:
    with pytest.raises(ConfigurationError, match=refused):
        NotificationSystem(idempotency=url)


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("redis://127.0.0.1:6379/0?prefix=app:notify:&ttl=86400", "redis://127.0.0.1:6379/0"),
        ("redis://127.0.0.1", "redis://127.0.0.1"),
        ("rediss://cache.example.com:6380/2", "rediss://cache.example.com:6380/2"),
        ("unix:///run/redis/redis.sock?prefix=app:", "unix:///run/redis/redis.sock"),
    ],
)
def test_good_redis_idempotency_urls_are_taken(url: str, address: str) -> None:
    notifications = NotificationSystem(idempotency=url)

    assert getattr(notifications.idempotency, "url", None) == address
