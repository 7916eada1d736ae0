"""Where a channel name leads: a :class:`Channel`, one made from a URL, or the outbox."""

from __future__ import annotations

import logging

from ._models import Notification
from .channels import Channel, channel_from_url

__all__ = ["OUTBOX_LIMIT", "Outbox", "as_channel"]

logger = logging.getLogger("pepperpy.event.notifications")

OUTBOX_LIMIT = 10_000


class Outbox(Channel):
    """Stands in for a channel added without a transport: records and logs messages."""

    def __init__(self, outbox: list[Notification]) -> None:
        self._outbox = outbox
        self._warned: set[str] = set()

    async def send(self, notification: Notification) -> None:
        name = notification.channel
        if name not in self._warned:
            self._warned.add(name)
            logger.warning(
                "notification channel %r has no transport; its messages go to "
                "notifications.outbox (add_channel(%r, URL_OR_CHANNEL) to deliver them)",
                name,
                name,
            )
        self._outbox.append(notification)
        if len(self._outbox) > OUTBOX_LIMIT:
            del self._outbox[0]
        logger.info(
            "outbox [%s] to %s: %s", name, notification.recipient or "-", notification.subject
        )


def as_channel(channel: str | Channel, *, kind: str | None = None) -> Channel:
    if isinstance(channel, Channel):
        return channel
    if isinstance(channel, str):
        return channel_from_url(channel, kind=kind)
    raise TypeError(f"a channel is a Channel or a URL string, got {channel!r}")
