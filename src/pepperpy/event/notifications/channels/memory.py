"""``memory://``: keeps every notification in a list (tests, previews, development)."""

from __future__ import annotations

from .._models import Notification
from .base import Channel

__all__ = ["MemoryChannel"]


class MemoryChannel(Channel):
    """Records notifications in ``outbox`` instead of sending them.

    ``limit`` bounds the list (oldest dropped first) so a forgotten development channel
    cannot grow without end in a long-running process.
    """

    def __init__(self, *, kind: str | None = None, limit: int | None = 10_000) -> None:
        if limit is not None and limit < 1:
            raise ValueError(f"limit must be >= 1 or None, got {limit!r}")
        self.kind = kind
        self.limit = limit
        self.outbox: list[Notification] = []

    async def send(self, notification: Notification) -> None:
        self.outbox.append(notification)
        if self.limit is not None and len(self.outbox) > self.limit:
            del self.outbox[0]

    def clear(self) -> None:
        """Forget every recorded notification."""
        self.outbox.clear()

    def __repr__(self) -> str:
        return f"MemoryChannel(kind={self.kind!r}, {len(self.outbox)} notifications)"
