"""Notification channels, one module each, all behind :class:`Channel`'s ``send``."""

from __future__ import annotations

from urllib.parse import urlsplit

from ..._errors import ConfigurationError
from .apprise import AppriseChannel
from .base import Channel, check_kind
from .console import ConsoleChannel
from .email import EmailChannel
from .memory import MemoryChannel
from .webhook import WebhookChannel

__all__ = [
    "AppriseChannel",
    "Channel",
    "ConsoleChannel",
    "EmailChannel",
    "MemoryChannel",
    "WebhookChannel",
    "channel_from_url",
]


def channel_from_url(url: str, *, kind: str | None = None) -> Channel:
    """Make the channel a URL names: ``smtp(s)://``, ``http(s)://``, ``console://``,
    ``memory://``, or any apprise URL (push, SMS, chat services).

    ``kind`` is checked as the channels' constructors check it, whatever the scheme."""
    check_kind(kind, "channel_from_url()", "the channel's own kind")
    if not isinstance(url, str) or "://" not in url:
        raise ConfigurationError(f"a channel URL looks like scheme://..., got {url!r}")
    try:
        scheme = urlsplit(url).scheme.lower()
    except ValueError as exc:  # an unclosed IPv6 bracket: "https://[::1/hook"
        # the scheme only: the rest of an apprise URL may be a token
        shown = url.partition("://")[0]
        raise ConfigurationError(f"bad {shown}:// channel URL: {exc}") from exc
    if scheme in ("smtp", "smtps"):
        return EmailChannel.from_url(url)
    if scheme in ("http", "https"):
        return WebhookChannel(url)
    if scheme == "console":
        target = url.split("://", 1)[1].strip("/")
        if target not in ("", "stdout", "stderr"):
            raise ConfigurationError(f"console:// takes stdout or stderr, got {target!r}")
        return ConsoleChannel.stderr(kind=kind) if target == "stderr" else ConsoleChannel(kind=kind)
    if scheme == "memory":
        return MemoryChannel(kind=kind)
    return AppriseChannel(url, kind=kind)
