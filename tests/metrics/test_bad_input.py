"""Bad input to the metrics API fails at once with an error naming what was wrong."""

from __future__ import annotations

import math

import pytest

from pepperpy.event import MetricsCollector


@pytest.mark.parametrize(
    "window", [math.nan, math.inf, -math.inf, 1e300, pytest.param(10**400, id="10**400"), 0, -1.0]
)
def test_a_window_that_is_not_a_finite_positive_duration_is_refused(window: float) -> None:
    with pytest.raises(ValueError, match=r"window must be a finite number of seconds"):
        MetricsCollector(window=window)


def test_the_longest_window_is_a_year() -> None:
    year = 365 * 24 * 3600.0
    assert MetricsCollector(window=year).window == year
    with pytest.raises(ValueError, match=r"at most 1 year.*got 31536001"):
        MetricsCollector(window=year + 1)
