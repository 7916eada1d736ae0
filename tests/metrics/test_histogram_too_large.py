"""LatencyHistogram.record refuses a duration past its last bucket (2**64 - 1 ns).

Recorded, ``10**400`` made ``mean`` and ``percentile`` raise OverflowError from then on,
and anything past ``2**64 - 1`` had no bucket of its own (clamped, off by any amount).
"""

from __future__ import annotations

import pytest

from pepperpy.event import LatencyHistogram


@pytest.mark.parametrize(
    "value",
    [10**400, 10**5000, 2**64, 1e300, float(2**64)],
    ids=["10**400", "10**5000", "2**64", "1e300", "float(2**64)"],
)
def test_too_large_is_refused_and_nothing_recorded(value: float) -> None:
    histogram = LatencyHistogram()
    histogram.record(1_000)
    with pytest.raises(ValueError, match=r"nanoseconds must be at most 2\*\*64 - 1"):
        histogram.record(value)
    assert histogram.count == 1
    assert histogram.total == 1_000
    assert histogram.max == 1_000
    assert sum(histogram.counts) == 1
    assert histogram.mean == 1_000.0
    assert histogram.percentile(0.99) == 1_000.0


def test_largest_value_is_recorded() -> None:
    histogram = LatencyHistogram()
    histogram.record(2**64 - 1)
    assert histogram.count == 1
    assert histogram.max == 2**64 - 1
    assert histogram.mean == float(2**64 - 1)
    assert histogram.percentile(0.5) == float(2**64 - 1)
