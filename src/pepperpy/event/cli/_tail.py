"""The end of the global log: the last events, and the position to follow from.

``store.head()`` gives the newest position in one query, and ``read_all`` backwards
from it gives the last ``n`` matching events, newest first, paging down only as far as
the filters need: a tail of a large store costs about ``n`` rows, not the whole log.
"""

from __future__ import annotations

from .._event import Event
from ..store import EventStore

__all__ = ["last_events"]


async def last_events(
    store: EventStore, count: int, streams: list[str] | None, types: list[str] | None
) -> tuple[list[Event], int]:
    """The last ``count`` events matching the filters, oldest first, and the position to
    follow from: one past the head, so that every event appended after is followed."""
    head = await store.head()
    if head is None:
        return [], 0
    if count == 0:
        return [], head + 1
    newest_first = await store.read_all(
        head, backwards=True, streams=streams, types=types, limit=count
    )
    newest_first.reverse()
    return newest_first, head + 1
