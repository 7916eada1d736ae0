"""The channel contract: one abstract ``send``; everything else is built on top of it.

Retries, rate limits, idempotency, dead letters, recipient resolution and templates all
live in :class:`~pepperpy.event.NotificationSystem`, so a new channel is a class with a
``send`` that delivers one :class:`Notification` or raises.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from contextvars import ContextVar

from ..._errors import ConfigurationError, MissingDependencyError, RecipientError, TemplateError
from .._models import Notification

__all__ = ["Channel", "check_kind"]

_PERMANENT = (RecipientError, TemplateError, ConfigurationError, MissingDependencyError)

#: set by the system around each try: waits for that try's rate-limit slot (once)
TURN: ContextVar[Callable[[], Awaitable[None]] | None] = ContextVar(
    "pepperpy_event_notification_turn", default=None
)

#: set by the system around each try: a context manager around a wait of the channel's
#: before it writes (a free connection), which ``close()`` ends at once, as a rate-limit
#: wait, the try failing unsent; it raises ``ClosedError`` when the system was closed
PAUSE: ContextVar[Callable[[], AbstractContextManager[None]] | None] = ContextVar(
    "pepperpy_event_notification_pause", default=None
)

#: set by the system around each try: records that the receiver accepted its message
SENT: ContextVar[Callable[[], None] | None] = ContextVar(
    "pepperpy_event_notification_sent", default=None
)


class Channel(ABC):
    """Delivers rendered notifications somewhere (an inbox, a URL, a phone, a list).

    ``kind`` says what addresses the channel uses: ``"email"`` (``user.email``),
    ``"sms"`` (``user.phone``), ``"push"`` (``user.device_token``) or another word for
    channels whose address comes only from ``to=``; ``None`` means "the name the
    channel was added under". ``needs_recipient`` is False for channels whose address is
    part of their configuration (webhooks, fixed apprise targets).

    ``paces_writes`` is True for channels whose ``send`` calls :meth:`ready_to_write`
    right before the message goes out (after connecting), so a rate limit spaces what
    the receiver sees; for other channels the system waits for the slot before ``send``.
    A channel whose receiver acknowledges a message calls :meth:`mark_accepted` when it
    does, so a failure after that is not taken for a lost message.
    """

    kind: str | None = None
    needs_recipient: bool = True
    paces_writes: bool = False

    @abstractmethod
    async def send(self, notification: Notification) -> None:
        """Deliver ``notification`` or raise (a :class:`NotificationError`, ideally)."""

    async def ready_to_write(self) -> None:
        """Wait for this try's rate-limit slot; call it just before writing the message.

        Channels that set ``paces_writes`` call it once the connection is ready, so the
        time spent connecting is not taken out of the spacing the receiver sees. It does
        nothing outside a rate-limited delivery, and only the first call of a try waits.
        It raises :class:`~pepperpy.event.ClosedError` when the system was closed
        meanwhile: the message must not be written then.
        """
        turn = TURN.get()
        if turn is not None:
            await turn()

    def mark_accepted(self) -> None:
        """Say that the receiver has accepted this try's message (an SMTP server's 250
        after DATA, an HTTP 2xx status line): from then on the try is a delivery,
        whatever happens before ``send`` returns (an error or a cut-off while ending the
        session, a cancellation, ``close()`` cutting it off), so it is not retried, not
        reported as failed or dead-lettered, and its idempotency key is kept (a retry
        would send the message twice). Call it once the receiver has said so, never
        before. Does nothing outside a delivery.
        """
        sent = SENT.get()
        if sent is not None:
            sent()

    def is_retryable(self, error: Exception) -> bool:
        """Whether trying ``error``'s delivery again could succeed.

        The default retries everything except a bad address or template and a
        configuration problem (a bad URL, a missing extra); protocol channels also
        refuse to retry permanent answers (SMTP 5xx, HTTP 3xx and 4xx).
        """
        return not isinstance(error, _PERMANENT)

    async def close(self) -> None:  # noqa: B027 - optional hook, most channels hold nothing
        """Release connections; the system calls it on ``close()``."""


def check_kind(kind: object, owner: str, unset: str) -> None:
    """Refuse a ``kind`` no recipient field or template variant could match: ``""`` fell
    back to the channel's name without a word, ``"sms "`` sent SMS without a phone, a
    non-str was kept as is. ``owner`` names what it is the kind of ("channel 'texts'",
    "MemoryChannel"), ``unset`` what leaving it out (None) means."""
    if kind is None:
        return
    if not isinstance(kind, str):
        raise TypeError(f"kind of {owner} must be a str (or None), got {kind!r}")
    if not kind.strip():
        raise ConfigurationError(
            f"kind of {owner} is empty: give one (email, sms, push, ...) or leave it out "
            f"for {unset}"
        )
    if kind != kind.strip():
        raise ConfigurationError(
            f"kind of {owner} has spaces around it: {kind!r}; did you mean {kind.strip()!r}?"
        )
