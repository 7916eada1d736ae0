"""``pepperpy-event serve``: a small web console over a store (Starlette + SSE).

Pages (server-rendered HTML, no JavaScript framework):

- ``/``: streams with their event counts, a page at a time (``?pattern=&after=&limit=``),
  and the number of matching streams (counted up to ``COUNTED_NAMES``, "more than"
  past them: ``_console_streams``), with the store totals when they all fit on the page;
- ``/streams/{name}``: the events of one stream, paged (``?from=&limit=``); any stream
  name, percent-encoded (``/streams/tenant%2Fa.1``), here and in ``/api/streams/{name}``;
- ``/tail``: the global log live, fed by Server-Sent Events.

JSON API (what the pages use, and what scripts can use):

- ``GET /api/streams?pattern=&after=&limit=``: ``[{"name", "events"}]``, a page of
  the matching streams in name order after the name ``after`` (at most ``limit``,
  default 100, up to 1000); when more follow, a ``Link: <...>; rel="next"`` header gives
  the next page's URL. Only the page's streams are counted, so a store with many
  streams answers as fast as one with a few;
- ``GET /api/streams/{name}?from=&limit=&backwards=``: events (404 for a missing stream);
- ``GET /api/events?from=&limit=&streams=&types=``: a page of the global log; a page
  of events ends early at ``MAX_RESPONSE_BYTES`` of JSON, and a full or cut page has a
  ``Link: <...>; rel="next"`` header (:mod:`._console_json`);
- ``GET /api/stats?minutes=60``: appends per minute (oldest first) and per event type
  over the last minutes, by ``recorded_at`` (charted on ``/``): every event, counted
  by the store from an index (``EventStore.count_by_minute``), none read or decoded;
  counted again at most every ``STATS_SECONDS``;
- ``GET /api/tail?from=&lines=&streams=&types=``: ``text/event-stream``; each event is
  sent with ``id: <global position>``, so a browser that reconnects resumes after the
  last one it saw (``Last-Event-ID``). Without ``from`` it starts with the last
  ``lines`` events (default 20), no more than ``MAX_RESPONSE_BYTES`` of them.

Only requests whose ``Host`` header names an allowed host are answered (a 421
otherwise; ``_hosts``), so a web page cannot rebind its own name to 127.0.0.1 and read the console
(DNS rebinding); every response says ``X-Content-Type-Options: nosniff``,
``X-Frame-Options: DENY``, ``Referrer-Policy: no-referrer`` and a
``Content-Security-Policy`` that runs only the pages' own inline script and style
(``_console_pages.CONTENT_SECURITY_POLICY``).

Every query parameter is checked: an unknown one, one given twice, a number that is not
a plain decimal in its range, a flag other than ``1/0/true/false/yes/no``, an invalid
pattern or stream name gets a 400 with ``{"error": message}`` (a short page for the HTML
routes). A store that cannot answer (closed, its database unreachable) gets a 503 with
``Retry-After: 1``, an access-control refusal a 403; any other failure is a bug of the
console: a 500 with ``{"error": "internal error"}``, its traceback logged once.

Here: the routes and the activity counts (``/api/stats``; tests set ``_now`` and
``STATS_SECONDS`` here). The checks of a request and
the answer to a failure are in :mod:`._console_requests`, the stream list's paging in
:mod:`._console_streams`, the HTML in :mod:`._console_pages`, the live tail's
Server-Sent Events in :mod:`._console_tail`.
"""

from __future__ import annotations

import asyncio
import html
import time
from collections.abc import Collection
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from .._event import Event
from ..store import EventStore
from ..store.base import MINUTE, from_micros, to_micros
from ._console_json import EventBatches, EventsPage, events_page, next_link
from ._console_pages import _TAIL_BODY, _chart, _data_text, _event_row, _page, _stream_href
from ._console_requests import (
    _DECIMAL,
    MAX_MINUTES,
    MAX_POSITION,
    _flag,
    _guarded,
    _int,
    _json_response,
    _known,
    _limit,
    _patterns,
    _stream_name,
    _tail_parameters,
)
from ._console_streams import COUNTED_NAMES, StreamsPage, _page_url, _streams_page
from ._console_tail import TailResponse, _sse, tail_backlog
from ._counts import stream_length
from ._hosts import LOOPBACK_HOSTS, HostCheck
from ._hosts import allowed_hosts as parse_hosts

__all__ = ["LOOPBACK_HOSTS", "console_app"]


def console_app(
    store: EventStore,
    *,
    allowed_hosts: Collection[str] | None = None,
    stopping: asyncio.Event | None = None,
) -> Starlette:
    """The console's ASGI application over an open ``store`` (the caller closes it).

    Requests must name one of ``allowed_hosts`` (default :data:`LOOPBACK_HOSTS`) in
    their ``Host`` header: a name alone allows any port, ``name:port`` (``[::1]:8080``)
    that port only (``_hosts``); ``"*"`` among them turns the check off (a malformed
    entry is a ``ValueError``). Setting
    ``stopping`` ends every live tail, so a server shutting down need not wait for them
    (close the store only once the server has stopped: requests in flight still use it).
    """
    if stopping is None:
        stopping = asyncio.Event()  # never set: tails end with the store or the client
    hosts = parse_hosts(LOOPBACK_HOSTS if allowed_hosts is None else allowed_hosts)
    stats = _ActivityCache(store)

    async def api_streams(request: Request) -> Response:
        page = await _streams_page(store, request, api=True)
        response = _json_response(page.streams)
        if page.next_after is not None:
            next_url = _page_url("/api/streams", page, page.next_after)
            response.headers["Link"] = f'<{next_url}>; rel="next"'
        return response

    async def api_stream(request: Request) -> Response:
        _known(request, "from", "limit", "backwards")
        start = _int(request, "from", None)
        limit = _limit(request)
        backwards = _flag(request, "backwards")
        name = _stream_name(request)
        version = await store.stream_version(name)
        if version is None:
            return JSONResponse({"error": f"stream {name!r} does not exist"}, status_code=404)

        async def read(cursor: int | None, count: int) -> list[Event]:
            return await store.get_stream(name, cursor, backwards=backwards, limit=count)

        def after(event: Event) -> int | None:
            position = event.position or 0
            if backwards:
                return position - 1 if position > 0 else None
            return position + 1 if position < version else None

        page = await events_page(read, after, start, limit)
        return _events_response(request, "/api" + _stream_href(name), page)

    async def api_events(request: Request) -> Response:
        _known(request, "from", "limit", "streams", "types", repeatable=("streams", "types"))
        start = _int(request, "from", 0, empty=False)
        limit = _limit(request)
        streams = _patterns(request, "streams", empty=False)
        types = _patterns(request, "types", empty=False)

        async def read(cursor: int | None, count: int) -> list[Event]:
            return await store.read_all(cursor, streams=streams, types=types, limit=count)

        def after(event: Event) -> int | None:
            position = event.global_position or 0
            return position + 1 if position < MAX_POSITION else None

        page = await events_page(read, after, start, limit)
        return _events_response(request, "/api/events", page)

    async def api_tail(request: Request) -> Response:
        streams, types, start, lines = _tail_parameters(request)
        resume = request.headers.get("last-event-id")
        if resume is not None and _DECIMAL.fullmatch(resume) and int(resume) < MAX_POSITION:
            start = int(resume) + 1
        backlog: list[bytes] = []
        if start is None:
            backlog, start = await tail_backlog(store, lines, streams, types)
        subscription = store.subscribe(start, streams=streams, types=types)
        return TailResponse(_sse(backlog, subscription, stopping), stopping)

    async def api_stats(request: Request) -> Response:
        _known(request, "minutes")
        minutes: int = _int(request, "minutes", 60, lower=1, upper=MAX_MINUTES)
        return _json_response(await stats.get(minutes))

    async def index(request: Request) -> Response:
        page = await _streams_page(store, request)
        activity = await stats.get(60)
        rows = "".join(
            f'<tr><td><a href="{html.escape(_stream_href(item["name"]))}">'
            f"{html.escape(item['name'])}</a></td><td>{item['events']}</td></tr>"
            for item in page.streams
        )
        summary = _streams_summary(page)
        links = [f'<a href="{html.escape(_page_url("/", page, None))}">first page</a>']
        if page.next_after is not None:
            following = _page_url("/", page, page.next_after)
            links.append(f'<a href="{html.escape(following)}">next {page.limit}</a>')
        more = f"<p>{' &middot; '.join(links)}</p>" if page.after or page.next_after else ""
        body = (
            f"<p>{summary} <a href='/tail'>Live tail</a></p>"
            f"<h2>Appends per minute, last hour</h2>{_chart(activity)}"
            f"<table><tr><th>stream</th><th>events</th></tr>{rows}</table>{more}"
        )
        return HTMLResponse(_page("Streams", body))

    async def stream_page(request: Request) -> Response:
        _known(request, "from", "limit")
        start = _int(request, "from", 0)
        limit = _limit(request)
        name = _stream_name(request)
        version = await store.stream_version(name)
        if version is None:
            body = f"<p>Stream {html.escape(name)!s} does not exist.</p>"
            return HTMLResponse(_page("Not found", body), status_code=404)

        async def read(cursor: int | None, count: int) -> list[Event]:
            return await store.get_stream(name, cursor, limit=count)

        def after(event: Event) -> int | None:
            position = event.position or 0
            return position + 1 if position < version else None

        # read in batches sized by the largest event seen: a page of 1,000 events of
        # megabytes each was read whole into memory to show 2,000 characters of each
        batches = EventBatches(read, after, start, limit)
        rows: list[str] = []
        last: Event | None = None
        while events := await batches.next():
            for event in events:
                text = _data_text(event)
                batches.largest = max(batches.largest, len(text))
                rows.append(_event_row(event, event.position, text))
            last = events[-1]
        following = (last.position or 0) + 1 if last is not None else start
        newest = max(version - limit + 1, 0)  # the last page: a long stream's newest events
        links = []
        if start > 0:
            links.append(f'<a href="?from=0&limit={limit}">first {limit}</a>')
            earlier = max(min(start, version + 1) - limit, 0)
            links.append(f'<a href="?from={earlier}&limit={limit}">previous {limit}</a>')
        if last is not None and following <= version:
            links.append(f'<a href="?from={following}&limit={limit}">next {limit}</a>')
        if newest > start:
            links.append(f'<a href="?from={newest}&limit={limit}">newest {limit}</a>')
        more = f"<p>{' &middot; '.join(links)}</p>" if links else ""
        count = await stream_length(store, name)
        body = (
            f"<p><a href='/'>all streams</a> &middot; {count} events</p>"
            f"<table><tr><th>#</th><th>type</th><th>time</th><th>data</th></tr>{''.join(rows)}</table>"
            + more
        )
        return HTMLResponse(_page(f"Stream {name}", body))

    async def tail_page(request: Request) -> Response:
        _tail_parameters(request)  # checked here: the page's EventSource would get a 400
        return HTMLResponse(_page("Live tail", _TAIL_BODY))

    routes = [
        Route("/", _guarded(index)),
        Route("/streams/{name:path}", _guarded(stream_page)),
        Route("/tail", _guarded(tail_page)),
        Route("/api/streams", _guarded(api_streams)),
        Route("/api/streams/{name:path}", _guarded(api_stream)),
        Route("/api/events", _guarded(api_events)),
        Route("/api/tail", _guarded(api_tail)),
        Route("/api/stats", _guarded(api_stats)),
    ]
    return Starlette(routes=routes, middleware=[Middleware(HostCheck, allowed_hosts=hosts)])


def _events_response(request: Request, path: str, page: EventsPage) -> Response:
    """A page of events as JSON, with a ``Link`` to the next when it is full or was cut
    short by :data:`MAX_RESPONSE_BYTES`."""
    response = Response(page.body, media_type="application/json")
    if page.next_from is not None:
        response.headers["Link"] = next_link(request, path, page.next_from)
    return response


def _plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}" if count == 1 else f"{count:,} {noun}s"


def _streams_summary(page: StreamsPage) -> str:
    """The index's line about the matching streams: the totals when every stream is on
    the page; else how many match (past ``COUNTED_NAMES``: "more than") and which of
    them the page shows (when the names counted reach its cursor)."""
    if page.counted_all and page.after is None and page.next_after is None:
        total = sum(item["events"] for item in page.streams)
        return f"{_plural(page.matching, 'stream')}, {_plural(total, 'event')}."
    if page.counted_all:
        streams = _plural(page.matching, "stream")
    else:
        streams = f"More than {COUNTED_NAMES:,} streams"
    if not page.streams:
        return f"{streams} (none below)."
    if page.skipped is None:
        return f"{streams} ({len(page.streams):,} below, after the first {COUNTED_NAMES:,})."
    first, last = page.skipped + 1, page.skipped + len(page.streams)
    return f"{streams} ({first:,} to {last:,} below)."


STATS_SECONDS = 5.0  # how long a count is reused: reloading / does not count again
STATS_KEPT = 8  # windows whose counts are kept (the most recently asked for)


class _ActivityCache:
    """``_activity`` per window, each reused for ``STATS_SECONDS``, counted once at a time.

    A count is an indexed query, but over a busy hour (or day) still one index entry per
    event: reloading ``/`` need not repeat it. Requests for a window arriving while its
    count runs wait for that count rather than starting one each (thirty browsers
    reloading ``/`` as a count expires made thirty counts, queued in the store's read
    threads before every other request). The last ``STATS_KEPT`` windows asked for are
    kept, so asking for every window from 1 to 1440 minutes does not keep 1440 counts.
    """

    def __init__(self, store: EventStore) -> None:
        self._store = store
        # minutes: (when, value), the most recently asked for last
        self._counted: dict[int, tuple[float, dict[str, Any]]] = {}
        self._counting: dict[int, asyncio.Future[dict[str, Any]]] = {}  # minutes: count

    async def get(self, minutes: int) -> dict[str, Any]:
        counted = self._counted.pop(minutes, None)
        if counted is not None and time.monotonic() - counted[0] < STATS_SECONDS:
            self._counted[minutes] = counted  # moved to the end: asked for most recently
            return counted[1]
        running = self._counting.get(minutes)
        if running is None:
            running = self._counting[minutes] = asyncio.ensure_future(self._count(minutes))
            running.add_done_callback(_retrieved)  # when every request waiting left
        # shielded: a client that leaves does not cancel the count the others wait for
        return await asyncio.shield(running)

    async def _count(self, minutes: int) -> dict[str, Any]:
        try:
            value = await _activity(self._store, minutes)
        finally:
            del self._counting[minutes]
        self._counted.pop(minutes, None)
        self._counted[minutes] = (time.monotonic(), value)
        while len(self._counted) > STATS_KEPT:
            del self._counted[next(iter(self._counted))]
        return value


def _retrieved(done: asyncio.Future[Any]) -> None:
    """Take a finished count's outcome, so that a failure nobody waited for is not
    logged as "exception was never retrieved" (the requests that did wait got it)."""
    if not done.cancelled():
        done.exception()


def _now() -> int:
    """The console's clock, in microseconds since the epoch (tests set it)."""
    return time.time_ns() // 1000


async def _activity(store: EventStore, minutes: int) -> dict[str, Any]:
    """Appends per minute (oldest first) and per type over the last ``minutes``.

    The minutes are the clock's (UTC, whole minutes): the last is the current one, so far.
    Events recorded later than the console's clock says it is now (a database server's
    clock ahead of this host's) are counted in the current minute. Every event counts:
    the store counts them from its index, reading none (no cap).
    """
    first = _now() // MINUTE - minutes + 1
    since = from_micros(first * MINUTE)
    per_minute = [0] * minutes
    by_type: dict[str, int] = {}
    for count in await store.count_by_minute(since):
        index = min(to_micros(count.minute) // MINUTE - first, minutes - 1)
        per_minute[index] += count.events
        by_type[count.type] = by_type.get(count.type, 0) + count.events
    return {
        "minutes": minutes,
        "since": since.isoformat(),
        "per_minute": per_minute,
        "by_type": dict(sorted(by_type.items())),
    }
