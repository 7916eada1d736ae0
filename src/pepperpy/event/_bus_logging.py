"""What the bus and its transports put on their log records besides the message.

Each record of a delivery retried, a dead letter, a broker outage or serve()'s lifecycle
carries its facts as attributes (``extra``), so a JSON log pipeline reads them without
parsing the message: ``kind`` says which record it is, and the other names are those of
docs/bus.md, "Log records and their fields" (``event_id`` and ``event_type`` as
:class:`~pepperpy.event.LogMiddleware` writes them).

:class:`Repeats` decides which failures are logged in full: a dead letter with its
traceback, a retry at WARNING. A handler failing every event (a dependency down) would
otherwise write a traceback and four WARNING lines per event.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NamedTuple

__all__ = ["TRACEBACK_INTERVAL", "Repeats", "Seen", "log_fields", "logged_shorter"]

#: seconds during which a handler's failures of one exception type are logged in full once
TRACEBACK_INTERVAL = 60.0
#: (handler, exception type) pairs remembered at most; the oldest are forgotten first
_MOST_REMEMBERED = 1000


def log_fields(kind: str, **values: Any) -> dict[str, Any]:
    """``extra`` for a record of ``kind``: ``values`` without those that are None."""
    fields = {"kind": kind}
    fields.update((name, value) for name, value in values.items() if value is not None)
    return fields


class Seen(NamedTuple):
    """What :meth:`Repeats.check` found for one failure."""

    #: whether to log this one in full (its traceback, or at WARNING rather than DEBUG)
    full: bool
    #: if ``full``: how many came since the last one logged in full (0: none, or the
    #: first ever); if not: how many came since the one logged in full, this one included
    repeats: int
    #: seconds since the last one logged in full (0.0 for the first ever)
    since: float


class Repeats:
    """Which of a handler's failures are logged in full, and how many were not.

    The first failure of a handler and exception type is, and then the first again
    once ``interval`` seconds have passed since that one; those between are logged
    shorter (a dead letter without its traceback, a retry at DEBUG), and the next one in
    full says how many there were. A handler failing every event (its database is down)
    so writes one traceback a minute, not one per event.
    """

    __slots__ = ("_clock", "_seen", "interval")

    def __init__(
        self, interval: float = TRACEBACK_INTERVAL, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.interval = interval
        self._clock = clock
        #: (handler, exception type) -> [when one was last logged in full, repeats since]
        self._seen: dict[tuple[str, str], list[float]] = {}

    def check(self, handler: str, error: BaseException) -> Seen:
        """Whether this failure of ``handler`` is logged in full (see :class:`Seen`)."""
        key = (handler, f"{type(error).__module__}.{type(error).__qualname__}")
        now = self._clock()
        seen = self._seen.get(key)
        if seen is not None and now - seen[0] < self.interval:
            seen[1] += 1
            return Seen(False, int(seen[1]), now - seen[0])
        self._seen.pop(key, None)  # re-inserted last: the oldest stay first
        if len(self._seen) >= _MOST_REMEMBERED:
            del self._seen[next(iter(self._seen))]
        self._seen[key] = [now, 0]
        if seen is None:
            return Seen(True, 0, 0.0)
        return Seen(True, int(seen[1]), now - seen[0])


def logged_shorter(seen: Seen, how: str) -> str:
    """What a failure logged in full adds about those like it logged ``how`` since the
    last one logged in full (nothing if there were none)."""
    if not seen.repeats:
        return ""
    return f" ({seen.repeats} like it logged {how} in the {seen.since:.0f} s before)"
