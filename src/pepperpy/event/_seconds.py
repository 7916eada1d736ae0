"""A duration given as an option (a timeout, a grace, a ttl): one rule, one message.

A number of seconds is an ``int`` or a ``float``, never a ``bool`` (``True`` is an
``int`` to Python, and would pass as one second), finite (NaN compares false with
everything, so it slipped through ``<= 0`` checks; infinity is no duration, and
overflows the timers it reaches), and greater than 0, or at least 0 where 0 means
"at once". Every option of the library's own that takes seconds is checked here, and
refused naming the option: a value that is no number (a ``bool`` included) with a
:class:`TypeError`, as docs/errors.md promises for every wrong argument type; a number
that is not finite or out of range with the error its caller raises for bad options.
"""

from __future__ import annotations

import math

from ._errors import ConfigurationError

__all__ = ["check_seconds"]


def check_seconds(
    value: object,
    name: str,
    *,
    zero: bool = False,
    error: type[Exception] = ConfigurationError,
) -> float:
    """``value`` as a float number of seconds, > 0 (>= 0 if ``zero``).

    Anything else raises an error saying ``"<name> must be a finite number of seconds
    > 0, got <value>"``: a :class:`TypeError` for a value that is neither an ``int`` nor a
    ``float`` (a ``bool`` included), ``error`` for a number that is not finite or out of
    range.
    """
    bound = ">= 0" if zero else "> 0"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a finite number of seconds {bound}, got {value!r}")
    try:
        seconds = float(value)
    except OverflowError:  # an int too large for a float: not finite either
        seconds = math.inf
    if math.isfinite(seconds) and (seconds >= 0 if zero else seconds > 0):
        return seconds
    raise error(f"{name} must be a finite number of seconds {bound}, got {value!r}")
