"""How many events a stream shows: what ``streams`` and the console print next to a name.

Positions are never reused, so after a delete a stream written again continues where it
stopped: its last position + 1 counts hidden events too. The count is instead taken
from the backend's bookkeeping (``StoreBackend.stream_state``): ``next_position -
first_visible``, one indexed row per stream, no event read or decoded.
"""

from __future__ import annotations

from ..store import EventStore

__all__ = ["stream_counts", "stream_length"]


async def stream_length(store: EventStore, stream: str) -> int:
    """The number of visible events of ``stream`` (0 when missing or deleted).

    Goes to the backend directly: call it for a name that ``store.streams()`` or
    ``store.stream_version()`` has just accepted (they check the name and read access).
    """
    state = await store.backend.stream_state(stream)
    if state is None or state.version is None:
        return 0
    return state.next_position - state.first_visible


async def stream_counts(store: EventStore, pattern: str = "#") -> list[tuple[str, int]]:
    """``(name, visible events)`` of every stream matching ``pattern``, sorted by name."""
    return [(name, await stream_length(store, name)) for name in await store.streams(pattern)]
