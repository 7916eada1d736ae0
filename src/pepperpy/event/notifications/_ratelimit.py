"""A per-channel rate limit that paces deliveries instead of dropping them."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections import deque
from math import inf

from .._errors import ConfigurationError
from .._loops import wake
from .._options import check_count
from .._seconds import check_seconds

__all__ = ["RateLimit"]

_UNITS = {
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "m": 60.0,
    "min": 60.0,
    "minute": 60.0,
    "h": 3600.0,
    "hour": 3600.0,
}
_SPEC = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*([a-z]+?)s?\s*$")


class _Waiter:
    """A delivery in line for a slot; ``wake`` resolves when it should look again."""

    __slots__ = ("loop", "wake")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.wake: asyncio.Future[None] = loop.create_future()


class _Slots:
    """One GCRA schedule (``tat``: when the next slot is due) and the line waiting for it."""

    __slots__ = ("tat", "waiters")

    def __init__(self) -> None:
        self.tat = -inf
        self.waiters: deque[_Waiter] = deque()


class RateLimit:
    """At most ``count`` sends per ``per`` seconds, paced evenly, with ``burst`` allowed
    back to back (GCRA: a send waits until its slot comes rather than failing).

    ``RateLimit.parse("10/s")``, ``"100/min"``, ``"1000/hour"`` or a number (per second).
    The default ``burst=1`` spaces the *writes* of messages ``per / count`` apart, so no
    window of ``per`` seconds sees more than ``count`` of them leave; providers' limits
    are usually written that way.

    A delivery waits twice, both times first come, first served:

    * :meth:`wait_start` before it connects, so deliveries queued behind the limit hold
      no connection; it starts at most one interval before its write slot can come;
    * :meth:`wait_write` right before the message is written, once the connection is
      ready, so a slow connection set-up is not taken out of the spacing.

    The limit counts messages written: a waiter that gives up (its task is cancelled)
    gives its place back, and a delivery that started but wrote nothing (it could not
    connect) gives its start back with :meth:`release_start`. One limit may serve
    several event loops (threads); they share its schedule.
    """

    def __init__(self, count: float, per: float = 1.0, *, burst: int = 1) -> None:
        # NaN passed ``count <= 0``, and then no slot ever came due: the first send
        # waited for ever; infinity is no pace (its interval is 0)
        self.count = _finite_count(count)
        self.per = check_seconds(per, "a rate limit's per")
        self.burst = check_count(burst, "burst")
        self.interval = self.per / self.count
        if self.interval == inf:  # a count so small its interval overflows: never a send
            raise ConfigurationError(f"a rate limit of {count!r} per {per!r}s is too slow")
        self._tolerance = (burst - 1) * self.interval
        self._lock = threading.Lock()  # loops in several threads share the schedule
        self._starts = _Slots()
        self._writes = _Slots()

    @classmethod
    def parse(cls, spec: RateLimit | str | float) -> RateLimit:
        """A :class:`RateLimit` from ``"N/unit"``, a per-second number or a ready one."""
        if isinstance(spec, RateLimit):
            return spec
        if isinstance(spec, bool):  # a wrong type (True would be 1 per second)
            raise TypeError(f"not a rate limit: {spec!r}")
        if isinstance(spec, int | float):
            return cls(_finite_count(spec, "a rate limit of sends per second"))
        if isinstance(spec, str):
            match = _SPEC.match(spec.lower())
            if match and match.group(2) in _UNITS:
                return cls(float(match.group(1)), _UNITS[match.group(2)])
        raise (ConfigurationError if isinstance(spec, str) else TypeError)(
            f"a rate limit looks like '10/s', '100/min' or '1000/hour', got {spec!r}"
        )

    async def wait_start(self) -> float:
        """Wait until a delivery may start (connect); returns when (``time.monotonic()``)."""
        return await self._take(self._starts, self._writes)

    async def wait_write(self) -> float:
        """Wait for the slot to write a message; returns when (``time.monotonic()``)."""
        return await self._take(self._writes, None)

    async def acquire(self) -> float:
        """Both waits at once, for a sender that cannot tell connecting from writing."""
        await self.wait_start()
        return await self.wait_write()

    def release_start(self) -> None:
        """Give back a start that led to no write, so the next delivery need not wait for it."""
        with self._lock:
            self._starts.tat -= self.interval
            self._wake_head(self._starts)

    async def _take(self, slots: _Slots, writes: _Slots | None) -> float:
        """Get in line for a slot of ``slots``; starts also wait for ``writes`` to come near."""
        loop = asyncio.get_running_loop()
        waiter = _Waiter(loop)
        with self._lock:
            slots.waiters.append(waiter)
        try:
            while True:
                with self._lock:
                    wait: float | None = None  # not first in line: until the line moves
                    if slots.waiters[0] is waiter:
                        now = time.monotonic()
                        due = slots.tat
                        if writes is not None:  # no earlier than an interval before a write
                            due = max(due, writes.tat - self.interval)
                        due -= self._tolerance
                        if now >= due:
                            slots.tat = max(slots.tat, now) + self.interval
                            self._leave(slots, waiter)
                            return now
                        wait = due - now
                    if waiter.wake.done():
                        waiter.wake = loop.create_future()
                    signal = waiter.wake
                await asyncio.wait((signal,), timeout=wait)
        except BaseException:
            with self._lock:
                self._leave(slots, waiter)
            raise

    def _leave(self, slots: _Slots, waiter: _Waiter) -> None:
        """Take ``waiter`` out of line (call with the lock); wake the next one if it led."""
        led = bool(slots.waiters) and slots.waiters[0] is waiter
        try:
            slots.waiters.remove(waiter)
        except ValueError:
            return
        if led:
            self._wake_head(slots)

    @staticmethod
    def _wake_head(slots: _Slots) -> None:
        """Tell the first in line to look again (call with the lock)."""
        while slots.waiters:
            head = slots.waiters[0]
            if wake(head.loop, head.wake):
                return
            slots.waiters.popleft()  # its loop is closed: that waiter will never run again

    def __repr__(self) -> str:
        return f"RateLimit({self.count:g}/{self.per:g}s, burst={self.burst})"


def _finite_count(count: object, what: str = "a rate limit's count") -> float:
    """``count`` as a float, finite and > 0: a value that is no number (a bool included)
    is a ``TypeError``, a number out of range a ConfigurationError."""
    message = f"{what} must be a finite number > 0, got {count!r}"
    if isinstance(count, bool) or not isinstance(count, int | float):
        raise TypeError(message)
    try:
        value = float(count)
    except OverflowError:  # an int too large for a float
        value = inf
    if 0 < value < inf:  # NaN fails this too
        return value
    raise ConfigurationError(message)
