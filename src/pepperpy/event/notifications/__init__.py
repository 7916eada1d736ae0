"""Notifications: templated messages on email, webhooks, push and SMS, driven by events."""

from __future__ import annotations

from ._idempotency import IdempotencyStore, MemoryIdempotencyStore, RedisIdempotencyStore
from ._models import ChannelResult, Notification, NotificationDeadLetter, NotificationResult
from ._ratelimit import RateLimit
from ._system import NotificationSystem
from ._templates import OutdatedDependencyError, Rendered, TemplateLibrary
from .channels import (
    AppriseChannel,
    Channel,
    ConsoleChannel,
    EmailChannel,
    MemoryChannel,
    WebhookChannel,
    channel_from_url,
)

__all__ = [
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
    "OutdatedDependencyError",
    "RateLimit",
    "RedisIdempotencyStore",
    "Rendered",
    "TemplateLibrary",
    "WebhookChannel",
    "channel_from_url",
]
