"""The checks ``write_stored`` makes under a backend's write lock (see ``base``).

Imported by ``base`` once its types are defined, as ``_plan`` is.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .._errors import StoreError
from .base import Row

__all__ = ["check_stored"]


def check_stored(
    rows: Sequence[Row],
    head: int | None,
    after: int | None,
    next_positions: Callable[[str], int],
) -> dict[str, int]:
    """Check ``write_stored``'s input against the store, under its write lock: the head
    must be ``after``, global positions past it and increasing, and each stream's rows
    must continue it (``next_positions(stream)``: its next position now). Returns each
    stream's next position once ``rows`` are written. Raises :class:`StoreError`.
    """
    if head != after:
        raise StoreError(
            f"the destination's newest event is {_at(head)}, not {_at(after)} as the copy "
            "found it: something else wrote to it meanwhile; nothing of this batch was "
            "written (run the copy again, with nothing else writing to the destination)"
        )
    last = -1 if after is None else after
    following: dict[str, int] = {}
    for row in rows:
        position, stream, stream_position = row[0], row[1], row[2]
        if position <= last:
            raise StoreError(
                f"stored events must come in increasing global positions: {position} "
                f"follows {last}; nothing of this batch was written"
            )
        expected = following.get(stream)
        if expected is None:
            expected = next_positions(stream)
        if stream_position != expected:
            raise StoreError(
                f"the event at global position {position} is at position {stream_position} "
                f"of stream {stream!r}, whose next position is {expected}: the destination "
                "is not a copy of the source; nothing of this batch was written"
            )
        following[stream] = stream_position + 1
        last = position
    return following


def _at(position: int | None) -> str:
    return "none (it is empty)" if position is None else f"at global position {position}"
