"""``console://``: prints each notification (``console://stderr`` for standard error)."""

from __future__ import annotations

import sys
from typing import TextIO

from .._models import Notification
from .base import Channel, check_kind

__all__ = ["ConsoleChannel"]


class ConsoleChannel(Channel):
    """Writes a readable block per notification to ``stream`` (stdout by default).

    The stream is looked up at send time when not given, so output captured by a test
    runner or redirected by the application lands where expected.
    """

    def __init__(self, stream: TextIO | None = None, *, kind: str | None = None) -> None:
        check_kind(kind, "ConsoleChannel", "the name the channel is added under")
        self.stream = stream
        self.kind = kind
        self._stderr = False

    @classmethod
    def stderr(cls, *, kind: str | None = None) -> ConsoleChannel:
        """A console channel writing to standard error."""
        channel = cls(kind=kind)
        channel._stderr = True
        return channel

    async def send(self, notification: Notification) -> None:
        stream = self.stream or (sys.stderr if self._stderr else sys.stdout)
        to = notification.recipient or "-"
        lines = [f"[{notification.channel}] to {to}"]
        if notification.subject:
            lines.append(f"Subject: {notification.subject}")
        lines.append(notification.body.rstrip("\n"))
        stream.write("\n".join(lines) + "\n\n")
        stream.flush()

    def __repr__(self) -> str:
        target = "stderr" if self._stderr else ("stdout" if self.stream is None else "stream")
        return f"ConsoleChannel({target})"
