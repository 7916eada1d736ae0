"""The web console's stream list, a page at a time: what ``/`` and ``/api/streams`` show."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request

from ..store import EventStore
from ._console_requests import PAGE_LIMIT, _known, _limit, _pattern
from ._counts import _visible

__all__ = ["COUNTED_NAMES", "StreamsPage"]

#: names read from the store at a time while the HTML page counts the matching streams
_NAMES_READ = 1000
#: matching stream names the HTML page counts at most, for its totals: past them it says
#: "more than 10,000 streams". Counting them all walked every name of the store at each
#: view, so a store of millions of streams made every reload of ``/`` a full walk.
COUNTED_NAMES = 10_000


@dataclass(frozen=True, slots=True)
class StreamsPage:
    """One page of the stream list: what ``/`` and ``/api/streams`` show."""

    pattern: str
    after: str | None  # the cursor this page starts after (None: the first page)
    limit: int
    streams: list[dict[str, Any]]  # {"name", "events"}, in name order
    #: streams matching the pattern, counted up to COUNTED_NAMES (0 from the API)
    matching: int
    #: False when more than COUNTED_NAMES match: ``matching`` is then that bound
    counted_all: bool
    #: matching streams before this page (0 from the API); None when the cursor is past
    #: the names counted
    skipped: int | None
    next_after: str | None  # the cursor of the next page (None: this is the last)


async def _streams_page(store: EventStore, request: Request, *, api: bool = False) -> StreamsPage:
    """The page a request asks for. Names are read from the store a page at a time
    (``EventStore.iter_streams``), never all at once: the page's names after the cursor
    (and one more, to know whether another page follows), counted with one backend read
    (1,000 streams were 1,000 queries: half a second on PostgreSQL). The API (``api``)
    shows no totals: ``matching`` and ``skipped`` are 0. The HTML page also counts the
    matching streams, and those before the page, going through their names without
    keeping them, but no further than :data:`COUNTED_NAMES`: its cost per view is bounded
    however many streams the store holds. The API refuses an empty pattern, which a page
    takes for every stream."""
    _known(request, "pattern", "after", "limit")
    pattern = _pattern(request, "pattern", empty=not api)
    after = request.query_params.get("after") or None
    limit = _limit(request)
    chosen: list[str] = []
    more = False
    async for name in store.iter_streams(pattern, page_size=limit + 1, after=after):
        if len(chosen) == limit:
            more = True
            break
        chosen.append(name)
    matching = skipped = 0
    counted_all = past_cursor = True
    if not api:
        past_cursor = after is None
        async for name in store.iter_streams(pattern, page_size=_NAMES_READ):
            if matching == COUNTED_NAMES:
                counted_all = False
                break
            matching += 1
            if after is not None and not past_cursor:
                if name <= after:
                    skipped += 1
                else:
                    past_cursor = True
    states = await store.backend.stream_states(chosen)  # one read, not one per stream
    counted = [{"name": name, "events": _visible(states.get(name))} for name in chosen]
    return StreamsPage(
        pattern,
        after,
        limit,
        counted,
        matching,
        counted_all,
        skipped if counted_all or past_cursor else None,
        chosen[-1] if more else None,
    )


def _page_url(path: str, page: StreamsPage, after: str | None) -> str:
    """The URL of a page of the stream list, keeping the request's pattern and limit."""
    query: dict[str, str | int] = {}
    if page.pattern != "#":
        query["pattern"] = page.pattern
    if after is not None:
        query["after"] = after
    if page.limit != PAGE_LIMIT:
        query["limit"] = page.limit
    return f"{path}?{urlencode(query)}" if query else path
