"""Events an attached processor takes but none of its handlers match.

An attachment takes every event its pattern selects: a bus group acknowledges it, a
manager calls it done, a store subscription moves past it. When none of the processor's
handlers matches the event, nothing ran for it, and on a broker the group will never see
it again. Two guards:

* :func:`check_overlap`, at ``attach()``: an attachment pattern that can match none of
  the handlers' patterns (``attach(bus, "order.*")`` beside ``handle("orders.*")``) is a
  :class:`ConfigurationError`, before anything is subscribed.
* :class:`Unmatched`, per attachment, for what gets past it (handlers registered later or
  removed, a pattern broader than the handlers): each such event is counted, and then
  logged (``"warn"``, rate-limited per event type), refused (``"error"``: raised to the
  source, which retries and dead-letters it) or let through quietly (``"ignore"``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Literal

from ._errors import ConfigurationError, UnknownTopicError
from ._event import Event
from ._patterns import could_overlap

__all__ = ["UNMATCHED_MODES", "UnmatchedMode", "Unmatched", "check_overlap", "check_mode"]

logger = logging.getLogger("pepperpy.event.processor")

UnmatchedMode = Literal["warn", "error", "ignore"]
UNMATCHED_MODES: tuple[str, ...] = ("warn", "error", "ignore")

#: seconds between two warnings about one event type on one attachment
WARN_EVERY = 60.0
#: event types whose last warning an attachment remembers (beyond: forgotten, warned again)
_REMEMBERED = 1024
#: handler patterns named in a message (the rest are counted)
_SHOWN = 10


def check_mode(unmatched: object) -> UnmatchedMode:
    """``unmatched`` if it is one of :data:`UNMATCHED_MODES`, else a ConfigurationError."""
    if not isinstance(unmatched, str) or unmatched not in UNMATCHED_MODES:
        choices = ", ".join(repr(mode) for mode in UNMATCHED_MODES)
        raise ConfigurationError(f"unmatched must be one of {choices}, got {unmatched!r}")
    return unmatched  # type: ignore[return-value]


def describe(patterns: Sequence[str]) -> str:
    """Handler patterns for a message: at most :data:`_SHOWN` of them, then a count."""
    shown = ", ".join(repr(pattern) for pattern in patterns[:_SHOWN])
    more = len(patterns) - _SHOWN
    return f"[{shown}{f', and {more} more' if more > 0 else ''}]"


def no_match(patterns: Sequence[str]) -> str:
    """Why an event reached no handler, for a message."""
    if not patterns:
        return "reached a processor that has no handlers"
    return f"matches none of the processor's handler patterns {describe(patterns)}"


def check_overlap(source: str, attached: Iterable[str], handlers: Sequence[str]) -> None:
    """Refuse an attachment pattern that can match none of ``handlers`` (if any).

    A processor without handlers may be attached (they can be registered afterwards);
    :class:`Unmatched` then reports what it takes meanwhile.
    """
    if not handlers:
        return
    patterns = list(attached)
    for pattern in patterns:
        if not any(could_overlap(pattern, handler) for handler in handlers):
            which = f" ({pattern!r})" if len(patterns) > 1 else ""
            raise ConfigurationError(
                f"cannot attach the processor: the {source}{which} can match none of its "
                f"handler patterns {describe(handlers)}, so every event it took would be "
                "consumed without a handler; fix the pattern or the handlers"
            )


class Unmatched:
    """One attachment's count of, and policy for, events no handler matched."""

    __slots__ = ("_suppressed", "_warned", "count", "handlers", "mode", "outcome", "source")

    def __init__(
        self,
        mode: UnmatchedMode,
        source: str,
        handlers: Callable[[], Sequence[str]],
        outcome: str = "taken without a handler",
    ) -> None:
        self.mode = mode
        self.source = source  # "bus subscription 'order.*' (group 'billing')"
        self.handlers = handlers  # the processor's handler patterns, when a message needs them
        self.outcome = outcome  # what became of such an event, for the warning
        self.count = 0
        self._warned: dict[str, float] = {}  # event type -> when it was last logged
        self._suppressed: dict[str, int] = {}  # event type -> deliveries not logged since

    def taken(self, event: Event) -> None:
        """Record that ``event`` matched no handler; raise if the attachment refuses it."""
        self.count += 1
        if self.mode == "ignore":
            return
        if self.mode == "error":
            raise UnknownTopicError(
                f"{self.source}: event {event.type!r} ({event.id}) {no_match(self.handlers())}"
            )
        now = time.monotonic()
        kind = event.type
        last = self._warned.get(kind)
        if last is not None and now - last < WARN_EVERY:
            self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
            return
        if last is None and len(self._warned) >= _REMEMBERED:
            self._forget(now)
        self._warned[kind] = now
        skipped = self._suppressed.pop(kind, 0)
        logger.warning(
            "%s: event %r (%s) %s, and is %s%s. Pass unmatched='error' to attach() to "
            "make such an event a failure (a bus retries and dead-letters it), or "
            "unmatched='ignore' if they are expected",
            self.source,
            kind,
            event.id,
            no_match(self.handlers()),
            self.outcome,
            f"; {skipped} more of type {kind!r} since the last warning" if skipped else "",
        )

    def _forget(self, now: float) -> None:
        """Make room: drop the types whose quiet period is over, or else all of them."""
        expired = [kind for kind, when in self._warned.items() if now - when >= WARN_EVERY]
        for kind in expired or list(self._warned):
            del self._warned[kind]
            self._suppressed.pop(kind, None)
