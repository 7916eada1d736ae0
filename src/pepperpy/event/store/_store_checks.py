"""The argument checks :class:`~pepperpy.event.store.EventStore` shares between writing
and reading: stream positions, global positions and expected versions in the range every
backend holds, refused with the error type docs/errors.md promises.
"""

from __future__ import annotations

from .base import ExpectedVersion, StreamExpectation

#: the greatest position or global position a store can hold (SQLite's and PostgreSQL's
#: 64-bit integers): larger ones are refused up front, the same on every backend
MAX_POSITION = 2**63 - 1
#: what a stream name is called in errors (it has a topic's form)
STREAM_NAME = "stream name"


def _check_expected(expected: ExpectedVersion) -> None:
    if isinstance(expected, StreamExpectation):
        return
    if expected.__class__ is not int or not 0 <= expected <= MAX_POSITION:
        raise _refused(
            expected,
            f"expected_version must be a stream position (an int from 0 to {MAX_POSITION}), "
            f"NO_STREAM, STREAM_EXISTS or ANY; got {expected!r}",
        )


#: what a subscription given no usable position is told
_FROM_NOW_ON = (
    "; to follow only the events appended from now on, subscribe past the head: "
    "head = await store.head(); store.subscribe(0 if head is None else head + 1)"
)


def _check_position(position: int, hint: str = "") -> None:
    """Refuse a ``from_position`` no store holds; ``hint`` ends the error unless the
    position is only too large."""
    if position.__class__ is not int or not 0 <= position <= MAX_POSITION:
        if position.__class__ is int and position > MAX_POSITION:
            hint = ""
        raise _refused(
            position,
            f"from_position must be an int from 0 to {MAX_POSITION}, got {position!r}{hint}",
        )


def _refused(value: object, message: str) -> TypeError | ValueError:
    """The error for a position or version refused: a value that is no int (a bool, a
    float, a str, None) is a wrong type, a ``TypeError`` as docs/errors.md promises; an
    int out of range, a ``ValueError``."""
    return TypeError(message) if value.__class__ is not int else ValueError(message)
