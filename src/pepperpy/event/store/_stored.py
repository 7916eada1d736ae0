"""The checks ``write_stored`` makes under a backend's write lock (see ``base``).

Imported by ``base`` once its types are defined, as ``_plan`` is.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from .._errors import StoreError
from .base import Row

__all__ = ["check_ids", "check_stored"]


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
        raise _refused(
            f"the destination's newest event is {_at(head)}, not {_at(after)} as the copy "
            "found it: something else wrote to it meanwhile; nothing of this batch was "
            "written (run the copy again, with nothing else writing to the destination)"
        )
    last = -1 if after is None else after
    following: dict[str, int] = {}
    for row in rows:
        position, stream, stream_position = row[0], row[1], row[2]
        if position <= last:
            raise _refused(
                f"stored events must come in increasing global positions: {position} "
                f"follows {last}; nothing of this batch was written"
            )
        expected = following.get(stream)
        if expected is None:
            expected = next_positions(stream)
        if stream_position != expected:
            raise _refused(
                f"the event at global position {position} is at position {stream_position} "
                f"of stream {stream!r}, whose next position is {expected}: the destination "
                "is not a copy of the source; nothing of this batch was written"
            )
        following[stream] = stream_position + 1
        last = position
    return following


def check_ids(
    rows: Sequence[Row],
    visible_from: Mapping[str, int],
    first_visible: Callable[[str], int],
    known: Mapping[tuple[str, str], int],
) -> None:
    """Refuse a row that would be visible with an id its stream holds visible already (a
    stored one, ``known``: (stream, id) -> position, as the backend looked up the rows'
    pairs, or an earlier row): appends rely on a stream's ids being unique to skip
    retried events. ``first_visible(stream)``: the stream's first visible position now,
    raised by ``visible_from``. Raises :class:`StoreError`.
    """
    floors: dict[str, int] = {}
    seen: dict[tuple[str, str], int] = {}
    for row in rows:
        stream = row[1]
        floor = floors.get(stream)
        if floor is None:
            floor = floors[stream] = max(first_visible(stream), visible_from.get(stream, 0))
        if row[2] < floor:
            continue  # hidden once written: a deleted stream's ids may come back
        key = (stream, row[3])
        held = known.get(key)
        if held is None or held < floor:
            held = seen.get(key)
        if held is not None:
            raise _refused(
                f"the event at global position {row[0]} (position {row[2]} of stream "
                f"{stream!r}) has id {row[3]!r}, which the stream holds already at position "
                f"{held}: a stream's ids are unique (appends skip a retried event by its id); "
                "the destination is not a copy of the source; nothing of this batch was "
                "written"
            )
        seen[key] = row[2]


def _refused(message: str) -> StoreError:
    """A batch refused by these checks, which run before anything is written: the
    error says so in ``written`` (False), not only in its message."""
    error = StoreError(message)
    error.written = False
    return error


def _at(position: int | None) -> str:
    return "none (it is empty)" if position is None else f"at global position {position}"
