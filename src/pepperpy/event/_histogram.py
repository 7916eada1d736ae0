"""LatencyHistogram: a mergeable, fixed-size log-linear histogram of durations.

HDR style: 32 exact values, then 16 linear sub-buckets per power of two, so any
(nearest-rank) percentile is within 1/32 (3.125%) of the true value, memory stays bounded
however many durations are recorded, and histograms merge by adding bucket counts.
"""

from __future__ import annotations

import math
import operator
from fractions import Fraction

__all__ = ["BUCKETS", "LINEAR", "MAX_NANOSECONDS", "SUB_BITS", "LatencyHistogram"]

SUB_BITS = 5  # 2**5 = 32 exact values, then 16 sub-buckets per power of two
LINEAR = 1 << SUB_BITS
_HALF = LINEAR >> 1
BUCKETS = LINEAR + (64 - SUB_BITS) * _HALF  # enough for any 64-bit nanosecond count
#: the longest duration ``record`` takes (about 584 years): the last bucket's top, past
#: which a value has no bucket of its own (and past the float range, ``mean`` and
#: ``percentile`` raised OverflowError)
MAX_NANOSECONDS = (1 << 64) - 1


def _bucket(value: int) -> int:
    if value < LINEAR:
        return value if value > 0 else 0
    shift = value.bit_length() - SUB_BITS
    return (shift << 4) + (value >> shift)


def _whole_nanoseconds(value: object) -> int:
    """A duration given to :meth:`LatencyHistogram.record` as a whole number of ns."""
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"nanoseconds must be finite, got {value!r}")
        return int(value)
    if not isinstance(value, bool):
        try:
            return operator.index(value)  # type: ignore[arg-type]  # an int subclass, numpy ints
        except TypeError:
            pass
    raise TypeError(f"nanoseconds must be an int or a finite float, got {value!r}")


def _bounds(index: int) -> tuple[int, int]:
    """The ``[low, high)`` nanosecond range of bucket ``index``."""
    if index < LINEAR:
        return index, index + 1
    shift = (index >> 4) - 1
    mantissa = (index & 15) + 16
    return mantissa << shift, (mantissa + 1) << shift


class LatencyHistogram:
    """A mergeable, fixed-size log-linear histogram of nanosecond durations.

    Recording is O(1); percentiles are reported as the midpoint of the bucket holding
    the rank (clamped to the exact minimum and maximum seen), within 1/32 (3.125%) of
    the truth.
    """

    __slots__ = ("count", "counts", "max", "min", "total")

    def __init__(self) -> None:
        self.counts = [0] * BUCKETS
        self.count = 0
        self.total = 0
        self.min = 0
        self.max = 0

    def record(self, nanoseconds: float) -> None:
        """Add one duration in nanoseconds (negative values count as 0).

        An ``int``, or a finite ``float`` such as ``(perf_counter() - start) * 1e9``,
        truncated to whole nanoseconds, at most ``2**64 - 1`` (about 584 years).
        Anything else is a ``TypeError`` (a bool too); a NaN, an infinity or a value
        past ``2**64 - 1`` a ``ValueError``, and nothing is recorded.
        """
        value = nanoseconds if type(nanoseconds) is int else _whole_nanoseconds(nanoseconds)
        if value < 0:
            value = 0
        elif value > MAX_NANOSECONDS:
            # recorded, ``10**400`` made ``mean`` and ``percentile`` raise OverflowError
            # ever after; anything past the last bucket is a unit mistake
            # (an int's repr past 4300 digits raises ValueError of its own)
            shown = (
                repr(nanoseconds)
                if value.bit_length() <= 256
                else f"an int of {value.bit_length()} bits"
            )
            raise ValueError(
                f"nanoseconds must be at most 2**64 - 1 (about 584 years), got {shown}"
            )
        index = _bucket(value)
        if index >= BUCKETS:
            index = BUCKETS - 1
        self.counts[index] += 1
        if self.count == 0 or value < self.min:
            self.min = value
        if value > self.max:
            self.max = value
        self.count += 1
        self.total += value

    def merge(self, other: LatencyHistogram) -> LatencyHistogram:
        """Add ``other``'s counts into this histogram; returns ``self``."""
        if not isinstance(other, LatencyHistogram):
            raise TypeError(f"merge() takes a LatencyHistogram, got {other!r}")
        if other.count == 0:
            return self
        counts = self.counts
        for index, n in enumerate(other.counts):
            if n:
                counts[index] += n
        self.min = other.min if self.count == 0 else min(self.min, other.min)
        self.max = max(self.max, other.max)
        self.count += other.count
        self.total += other.total
        return self

    def copy(self) -> LatencyHistogram:
        """An independent copy."""
        return LatencyHistogram().merge(self)

    def percentile(self, fraction: float) -> float:
        """The duration (ns) below which ``fraction`` (0..1) of the records fall.

        The nearest-rank percentile: the ``ceil(fraction * count)``-th smallest duration
        (at least the first), as the midpoint of its bucket clamped to the min and max.
        """
        try:
            within = 0.0 <= fraction <= 1.0
        except TypeError:  # "0.95", None: the comparison's own error named neither
            raise TypeError(f"fraction must be a number within [0, 1], got {fraction!r}") from None
        if not within:
            raise ValueError(f"fraction must be within [0, 1], got {fraction!r}")
        if self.count == 0:
            return 0.0
        # the rank of the decimal ``fraction`` prints as: 0.07 is 0.07000000000000000666
        # as a float, and 0.07 * 100 is 7.000000000000001, which would rank 8th of 100
        rank = max(1, math.ceil(Fraction(repr(float(fraction))) * self.count))
        seen = 0
        for index, n in enumerate(self.counts):
            if n:
                seen += n
                if seen >= rank:
                    low, high = _bounds(index)
                    middle = (low + high - 1) / 2 if high - low > 1 else float(low)
                    return min(max(middle, float(self.min)), float(self.max))
        return float(self.max)

    @property
    def mean(self) -> float:
        """Mean duration in nanoseconds (0 when empty)."""
        return self.total / self.count if self.count else 0.0
