"""A per-channel rate limit that paces deliveries instead of dropping them."""

from __future__ import annotations

import asyncio
import re

from .._errors import ConfigurationError

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


class RateLimit:
    """At most ``count`` sends per ``per`` seconds, paced evenly, with ``burst`` allowed
    back to back (GCRA: a send waits until its slot comes rather than failing).

    ``RateLimit.parse("10/s")``, ``"100/min"``, ``"1000/hour"`` or a number (per second).
    The default ``burst=1`` spaces sends ``per / count`` apart, so no window of ``per``
    seconds sees more than ``count`` of them; providers' limits are usually written
    that way.
    """

    def __init__(self, count: float, per: float = 1.0, *, burst: int = 1) -> None:
        if count <= 0 or per <= 0:
            raise ConfigurationError(f"a rate limit needs count > 0 and per > 0, got {count}/{per}")
        if burst < 1:
            raise ConfigurationError(f"burst must be >= 1, got {burst!r}")
        self.count = count
        self.per = per
        self.burst = burst
        self.interval = per / count
        self._tolerance = (burst - 1) * self.interval
        self._next_at = 0.0

    @classmethod
    def parse(cls, spec: RateLimit | str | float) -> RateLimit:
        """A :class:`RateLimit` from ``"N/unit"``, a per-second number or a ready one."""
        if isinstance(spec, RateLimit):
            return spec
        if isinstance(spec, bool):
            raise ConfigurationError(f"not a rate limit: {spec!r}")
        if isinstance(spec, int | float):
            return cls(float(spec))
        if isinstance(spec, str):
            match = _SPEC.match(spec.lower())
            if match and match.group(2) in _UNITS:
                return cls(float(match.group(1)), _UNITS[match.group(2)])
        raise ConfigurationError(
            f"a rate limit looks like '10/s', '100/min' or '1000/hour', got {spec!r}"
        )

    def reserve(self, now: float) -> float:
        """Take the next slot at monotonic time ``now``; returns the seconds to wait for it."""
        due = max(self._next_at, now)
        self._next_at = due + self.interval
        return max(0.0, due - self._tolerance - now)

    async def acquire(self) -> None:
        """Wait for the next free slot (reserved at once, so waiters keep their order)."""
        wait = self.reserve(asyncio.get_running_loop().time())
        if wait > 0:
            await asyncio.sleep(wait)

    def __repr__(self) -> str:
        return f"RateLimit({self.count:g}/{self.per:g}s, burst={self.burst})"
