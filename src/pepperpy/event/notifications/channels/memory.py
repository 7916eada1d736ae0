"""``memory://``: keeps every notification in a list (tests, previews, development)."""

from __future__ import annotations

from ..._options import check_count
from .._models import Notification
from .base import Channel, check_kind

__all__ = ["MemoryChannel"]


class MemoryChannel(Channel):
    """Records notifications in ``outbox`` instead of sending them.

    ``limit`` bounds the list (oldest dropped first) so a forgotten development channel
    cannot grow without end in a long-running process.
    """

    def __init__(self, *, kind: str | None = None, limit: int | None = 10_000) -> None:
        check_kind(kind, "MemoryChannel", "the name the channel is added under")
        check_count(limit, "limit", optional=True, error=ValueError)
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
