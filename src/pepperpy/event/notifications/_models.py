"""The values a notification system hands around: messages, results, dead letters."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from .._ids import new_id

__all__ = [
    "ChannelResult",
    "Notification",
    "NotificationDeadLetter",
    "NotificationResult",
    "one_line",
]

Status = Literal["sent", "duplicate", "failed"]


def _now() -> datetime:
    return datetime.now(UTC)


def one_line(text: str) -> str:
    """``text`` as one line: every run of whitespace (line breaks included) is one space.

    Subjects become header lines, so a line break in one could end the header block or
    start a header of its own.
    """
    return " ".join(text.split())


@dataclass(frozen=True, slots=True)
class Notification:
    """One rendered message for one channel and one recipient.

    ``channel`` is the name the channel was added under; ``recipient`` is the address
    resolved for that channel (``None`` for channels that need none, such as webhooks);
    ``html`` is set when the template has an HTML variant. ``key`` identifies this
    delivery for idempotency (a digest of the key, channel and recipient, plus the
    message for keys derived from an event), if any.
    """

    channel: str
    recipient: str | None
    subject: str | None
    body: str
    html: str | None = None
    template: str | None = None
    key: str | None = None
    id: str = field(default_factory=new_id)
    created_at: datetime = field(default_factory=_now)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (what webhooks post)."""
        return {
            "id": self.id,
            "channel": self.channel,
            "recipient": self.recipient,
            "subject": self.subject,
            "body": self.body,
            "html": self.html,
            "template": self.template,
            "key": self.key,
            "created_at": self.created_at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class ChannelResult:
    """What happened on one channel: ``sent``, ``duplicate`` (already sent) or ``failed``.

    ``notification`` is ``None`` only when the message could not be built (no
    recipient address, template missing or broken); ``error`` is set when ``failed``.
    """

    channel: str
    status: Status
    notification: Notification | None = None
    error: Exception | None = None
    attempts: int = 0

    @property
    def ok(self) -> bool:
        """True when the message reached the channel (now or by an earlier delivery)."""
        return self.status != "failed"


class NotificationResult(Mapping[str, ChannelResult]):
    """The per-channel outcome of one ``notify`` call: ``result["email"].ok``."""

    __slots__ = ("_results",)

    def __init__(self, results: Mapping[str, ChannelResult]) -> None:
        self._results = dict(results)

    def __getitem__(self, channel: str) -> ChannelResult:
        return self._results[channel]

    def __iter__(self) -> Iterator[str]:
        return iter(self._results)

    def __len__(self) -> int:
        return len(self._results)

    @property
    def ok(self) -> bool:
        """True when every channel succeeded."""
        return all(result.ok for result in self._results.values())

    @property
    def sent(self) -> list[str]:
        """Channels that delivered (or had already delivered) the message."""
        return [name for name, result in self._results.items() if result.ok]

    @property
    def failed(self) -> dict[str, Exception]:
        """Channels that failed, with the error of each."""
        return {
            name: result.error
            for name, result in self._results.items()
            if result.error is not None and not result.ok
        }

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={r.status}" for name, r in self._results.items())
        return f"NotificationResult({inner})"


@dataclass(frozen=True, slots=True)
class NotificationDeadLetter:
    """A delivery that failed for good, with the reason, kept in ``dead_letters``."""

    channel: str
    reason: str
    exception: Exception
    attempts: int
    notification: Notification | None = None
    template: str | None = None
    failed_at: datetime = field(default_factory=_now)
