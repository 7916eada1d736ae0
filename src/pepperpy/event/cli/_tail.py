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

__all__ = ["KEPT_LINES", "last_events", "last_start"]

#: ``tail -n`` up to this many: the last events read at once, in memory; past it, where
#: they begin is found first, then they are printed as they are read
KEPT_LINES = 1000


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


async def last_start(
    store: EventStore, count: int, streams: list[str] | None, types: list[str] | None
) -> tuple[int, int, int]:
    """Where the last ``count`` matching events begin, for printing them as they are
    read (``read_all(first, ..., limit=found)``) rather than from a list of them all:
    ``(first, found, follow_from)``, ``first`` the global position of the oldest of
    them, ``found`` how many there are (at most ``count``), ``follow_from`` as
    :func:`last_events` gives it.

    The events are read newest first a page at a time and none is kept: ``tail -n
    1000000`` held a million events in memory before it printed the first.
    """
    _, follow_from = await last_events(store, 0, streams, types)
    first = found = 0
    if follow_from == 0 or count == 0:
        return first, found, follow_from
    newest_first = store.read_all(
        follow_from - 1, backwards=True, streams=streams, types=types, limit=count
    )
    async for event in newest_first:
        found += 1
        first = event.global_position or 0
    return first, found, follow_from
