"""The end of the global log: the last events, and the position to follow from.

``store.head()`` gives the newest position in one query, and ``read_all`` backwards
from it gives the last ``n`` matching events, newest first, paging down only as far as
the filters need: a tail of a large store costs about ``n`` rows, not the whole log.
"""

from __future__ import annotations

from .._errors import AccessDenied
from .._event import Event
from ..store import EventStore
from ..store._store import MAX_POSITION

__all__ = ["last_events"]


async def last_events(
    store: EventStore, count: int, streams: list[str] | None, types: list[str] | None
) -> tuple[list[Event], int]:
    """The last ``count`` events matching the filters, oldest first, and the position to
    follow from: one past the head, so that every event appended after is followed.

    A principal that may read only some streams may not ask for the head (it tells how
    busy every stream is): with ``streams`` given, it gets the last matching events read
    back from the top instead, and follows from one past the newest of them (every
    matching event appended after is past it), or from the start if there is none.
    """
    try:
        head = await store.head()
    except AccessDenied:
        if streams is None:
            raise
        return await _last_of_mine(store, count, streams, types)
    if head is None:
        return [], 0
    if count == 0:
        return [], head + 1
    newest_first = await store.read_all(
        head, backwards=True, streams=streams, types=types, limit=count
    )
    newest_first.reverse()
    return newest_first, head + 1


async def _last_of_mine(
    store: EventStore, count: int, streams: list[str], types: list[str] | None
) -> tuple[list[Event], int]:
    newest_first = await store.read_all(
        MAX_POSITION, backwards=True, streams=streams, types=types, limit=max(count, 1)
    )
    if not newest_first:
        return [], 0
    newest = newest_first[0].global_position
    assert newest is not None  # read from the store
    start = newest + 1
    kept = newest_first[:count]
    kept.reverse()
    return kept, start
