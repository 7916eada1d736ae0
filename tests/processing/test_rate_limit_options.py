"""RateLimitMiddleware refuses a rate or burst too large for a float clearly."""

from __future__ import annotations

import pytest

from pepperpy.event import RateLimitMiddleware


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"rate": 10**400}, "rate"),  # used to raise a bare OverflowError
        ({"rate": -(10**400)}, "rate"),
        ({"rate": 5, "burst": 10**400}, "burst"),
        ({"rate": 10**400, "burst": 2}, "rate"),
    ],
)
def test_a_rate_or_burst_no_float_can_hold_is_a_value_error_naming_it(
    kwargs: dict[str, int], named: str
) -> None:
    with pytest.raises(ValueError, match=rf"^{named} must be"):
        RateLimitMiddleware(**kwargs)


def test_the_largest_float_rate_is_still_taken() -> None:
    limit = RateLimitMiddleware(1e308)
    assert limit.rate == 1e308 and limit.burst == int(1e308)
