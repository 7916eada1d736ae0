"""The end of the global log, found without reading all of it.

The store has no "last position" call, but ``read_all(x, limit=1)`` answers "is there
an event at or after ``x``?", which is monotonic in ``x``: galloping then bisecting finds
the head in O(log n) one-row reads, gaps in the positions (PostgreSQL sequences) and all.
The last ``n`` matching events are then read from windows that grow fourfold from the
head backwards, so a tail of a large store costs about ``n`` rows, not the whole log.
"""

from __future__ import annotations

from collections import deque

from .._event import Event
from ..store import EventStore

__all__ = ["head_position", "last_events"]


async def _first_at(store: EventStore, position: int) -> int | None:
    found = await store.read_all(position, limit=1)
    return None if not found else found[0].global_position


async def head_position(store: EventStore) -> int | None:
    """The global position of the newest event, or None for an empty store."""
    low = await _first_at(store, 0)
    if low is None:
        return None
    step = 1
    while True:  # gallop: find some position with nothing at or after it
        probe = await _first_at(store, low + step)
        if probe is None:
            break
        low, step = probe, step * 2
    high = low + step
    while high - low > 1:  # an event exists at low; none at or after high
        middle = (low + high) // 2
        probe = await _first_at(store, middle)
        if probe is None:
            high = middle
        else:
            low = probe
    return low


async def last_events(
    store: EventStore, count: int, streams: list[str] | None, types: list[str] | None
) -> tuple[list[Event], int]:
    """The last ``count`` events matching the filters, and the position to follow from."""
    head = await head_position(store)
    if head is None:
        return [], 0
    following = head + 1
    if count == 0:
        return [], following
    window = count
    while True:
        start = max(0, following - window)
        found: deque[Event] = deque(maxlen=count)
        async for event in store.read_all(start, streams=streams, types=types):
            found.append(event)
            following = max(following, (event.global_position or 0) + 1)
        if len(found) == count or start == 0:
            return list(found), following
        window *= 4
