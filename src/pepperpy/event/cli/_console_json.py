"""The web console's pages of events as JSON, bounded by bytes as well as by count.

A page of ``/api/streams/NAME`` or ``/api/events`` held up to ``limit`` events (1,000 at
most), whatever their size: 1,000 events of 1 MB each were a 1 GB response, built whole
in memory. A page now ends before the event that would take it past
:data:`MAX_RESPONSE_BYTES` (it always holds at least one event, however large), and its
``Link: <...>; rel="next"`` header continues after its last event. The events are read in
batches sized by the largest seen so far, so the store is not asked for 1,000 events of
megabytes each to send four of them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlencode

from starlette.requests import Request

from .. import _json
from .._event import Event

__all__ = ["MAX_RESPONSE_BYTES", "EventBatches", "EventsPage"]

#: the bytes of one page of events from the JSON API, at most (unless its first event
#: alone is larger): the page ends early, its ``Link`` header continues from there
MAX_RESPONSE_BYTES = 4 * 1024 * 1024
#: events read first, before their sizes are known; each later batch at most 4 times
#: the previous one, and no more than the bytes left would hold at the largest size seen
_FIRST_READ = 8

#: read(cursor, count): up to ``count`` events from ``cursor`` (None: the natural start)
ReadEvents = Callable[[int | None, int], Awaitable[list[Event]]]
#: the cursor after an event (None: nothing can follow it)
After = Callable[[Event], int | None]


@dataclass(frozen=True, slots=True)
class EventsPage:
    """A page of events, serialized: ``body`` is the JSON list."""

    body: bytes
    #: the cursor of the next page, when the page is full (``limit`` events) or was cut
    #: short by size; None when the events ran out (or none can follow the last)
    next_from: int | None
    #: True when the page ended before ``limit`` events because of its size
    cut: bool


class EventBatches:
    """Up to ``limit`` events read from ``start``, a batch at a time: the first of
    ``_FIRST_READ`` events, each later one at most 4 times the previous and no more than
    the bytes left of :data:`MAX_RESPONSE_BYTES` would hold at the largest size seen
    (reported by the caller: ``largest``, and ``used`` when the bytes add up to one
    response). An empty batch: the end."""

    def __init__(self, read: ReadEvents, after: After, start: int | None, limit: int) -> None:
        self._read, self._after = read, after
        self._cursor, self._remaining = start, limit
        self._wanted = 0
        self._done = False
        self.largest = 1  # the largest event seen, in bytes (as the caller measures)
        self.used = 0  # bytes of the response so far

    async def next(self) -> list[Event]:
        if self._done or self._remaining <= 0:
            return []
        if self._wanted == 0:
            wanted = _FIRST_READ
        else:
            room = max(1, (MAX_RESPONSE_BYTES - self.used) // self.largest)
            wanted = min(room, 4 * self._wanted)
        wanted = min(wanted, self._remaining)
        self._wanted = wanted
        events = await self._read(self._cursor, wanted)
        self._remaining -= len(events)
        if len(events) < wanted or not events:
            self._done = True
        else:
            cursor = self._after(events[-1])
            self._done = cursor is None
            self._cursor = cursor
        return events


async def events_page(read: ReadEvents, after: After, start: int | None, limit: int) -> EventsPage:
    """Up to ``limit`` events read from ``start``, at most :data:`MAX_RESPONSE_BYTES` of
    JSON (the first event always included)."""
    parts: list[bytes] = []
    batches = EventBatches(read, after, start, limit)
    batches.used = 2  # the list's brackets
    last: Event | None = None
    while events := await batches.next():
        for event in events:
            encoded = _json.dumps(event.to_dict())
            if last is not None and batches.used + 1 + len(encoded) > MAX_RESPONSE_BYTES:
                return _page(parts, after(last), cut=True)
            batches.used += len(encoded) + (1 if parts else 0)
            batches.largest = max(batches.largest, len(encoded))
            parts.append(encoded)
            last = event
    full = last is not None and len(parts) == limit
    return _page(parts, after(last) if full and last is not None else None, cut=False)


def _page(parts: list[bytes], next_from: int | None, *, cut: bool) -> EventsPage:
    return EventsPage(b"[" + b",".join(parts) + b"]", next_from, cut)


def next_link(request: Request, path: str, next_from: int) -> str:
    """The ``Link`` header of the page after this one: the request's parameters, with
    ``from`` set to ``next_from``."""
    query = [(k, v) for k, v in request.query_params.multi_items() if k != "from"]
    return f'<{path}?{urlencode([*query, ("from", str(next_from))])}>; rel="next"'
