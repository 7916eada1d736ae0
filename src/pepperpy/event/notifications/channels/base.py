"""The channel contract: one abstract ``send``; everything else is built on top of it.

Retries, rate limits, idempotency, dead letters, recipient resolution and templates all
live in :class:`~pepperpy.event.NotificationSystem`, so a new channel is a class with a
``send`` that delivers one :class:`Notification` or raises.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from ..._errors import ConfigurationError, MissingDependencyError, RecipientError, TemplateError
from .._models import Notification

__all__ = ["Channel"]

_PERMANENT = (RecipientError, TemplateError, ConfigurationError, MissingDependencyError)


class Channel(ABC):
    """Delivers rendered notifications somewhere (an inbox, a URL, a phone, a list).

    ``kind`` says what addresses the channel uses: ``"email"`` (``user.email``),
    ``"sms"`` (``user.phone``), ``"push"`` (``user.device_token``) or another word for
    channels whose address comes only from ``to=``; ``None`` means "the name the
    channel was added under". ``needs_recipient`` is False for channels whose address is
    part of their configuration (webhooks, fixed apprise targets).
    """

    kind: str | None = None
    needs_recipient: bool = True

    @abstractmethod
    async def send(self, notification: Notification) -> None:
        """Deliver ``notification`` or raise (a :class:`NotificationError`, ideally)."""

    def is_retryable(self, error: Exception) -> bool:
        """Whether trying ``error``'s delivery again could succeed.

        The default retries everything except a bad address or template and a
        configuration problem (a bad URL, a missing extra); protocol channels also
        refuse to retry permanent answers (SMTP 5xx, HTTP 4xx).
        """
        return not isinstance(error, _PERMANENT)

    async def close(self) -> None:  # noqa: B027 - optional hook, most channels hold nothing
        """Release connections; the system calls it on ``close()``."""
