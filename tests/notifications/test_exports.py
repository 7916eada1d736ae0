"""The notification names are public, importable from ``pepperpy.event``."""

from __future__ import annotations

import inspect

import pepperpy.event as event_api
from pepperpy.event import notifications as package

NAMES = [
    "AppriseChannel",
    "Channel",
    "ChannelResult",
    "ConsoleChannel",
    "EmailChannel",
    "IdempotencyStore",
    "MemoryChannel",
    "MemoryIdempotencyStore",
    "Notification",
    "NotificationDeadLetter",
    "NotificationResult",
    "NotificationSystem",
    "RedisIdempotencyStore",
    "WebhookChannel",
]


def test_notification_names_are_exported() -> None:
    for name in NAMES:
        assert name in event_api.__all__
        assert getattr(event_api, name) is getattr(package, name)
    assert package.__all__ == sorted(package.__all__)


def test_channel_contract_is_one_abstract_method() -> None:
    assert event_api.Channel.__abstractmethods__ == frozenset({"send"})
    for name in ("EmailChannel", "WebhookChannel", "AppriseChannel", "ConsoleChannel"):
        cls = getattr(event_api, name)
        assert issubclass(cls, event_api.Channel) and not inspect.isabstract(cls)
