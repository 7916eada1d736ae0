"""``pepperpy-event serve``: a small web console over a store (Starlette + SSE).

Pages (server-rendered HTML, no JavaScript framework):

- ``/``: streams with their event counts, a page at a time (``?pattern=&after=&limit=``),
  and store totals;
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
- ``GET /api/events?from=&limit=&streams=&types=``: a page of the global log;
- ``GET /api/stats?minutes=60``: appends per minute (oldest first) and per event type
  over the last minutes, by ``recorded_at`` (charted on ``/``): every event, counted
  by the store from an index (``EventStore.count_by_minute``), none read or decoded;
  counted again at most every ``STATS_SECONDS``;
- ``GET /api/tail?from=&lines=&streams=&types=``: ``text/event-stream``; each event is
  sent with ``id: <global position>``, so a browser that reconnects resumes after the
  last one it saw (``Last-Event-ID``). Without ``from`` it starts with the last
  ``lines`` events (default 20).

Only requests whose ``Host`` header names an allowed host are answered (a 421
otherwise; ``_hosts``), so a web page cannot rebind its own name to 127.0.0.1 and read the console
(DNS rebinding); every response says ``X-Content-Type-Options: nosniff`` and
``Content-Security-Policy: frame-ancestors 'none'``.

Every query parameter is checked: an unknown one, one given twice, a number that is not
a plain decimal in its range, a flag other than ``1/0/true/false/yes/no``, an invalid
pattern or stream name gets a 400 with ``{"error": message}`` (a short page for the HTML
routes). A store that cannot answer (closed, its database unreachable) gets a 503 with
``Retry-After: 1``, an access-control refusal a 403; any other failure is a bug of the
console: a 500 with ``{"error": "internal error"}``, its traceback logged once.
"""

from __future__ import annotations

import asyncio
import bisect
import html
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from .. import _json
from .._errors import (
    AccessDenied,
    ClosedError,
    EncryptionError,
    PatternError,
    StoreError,
    StreamDeletedError,
)
from .._event import Event
from .._patterns import parse_name, parse_pattern
from ..store import EventStore, StoreSubscription
from ..store.base import MINUTE, from_micros, to_micros
from ._counts import stream_length
from ._errors import scrub
from ._hosts import LOOPBACK_HOSTS, HostCheck
from ._hosts import allowed_hosts as parse_hosts
from ._tail import last_events

__all__ = ["LOOPBACK_HOSTS", "console_app"]

logger = logging.getLogger("pepperpy.event.console")

PAGE_LIMIT = 100
MAX_LIMIT = 1000
MAX_POSITION = 2**63 - 1  # the store's largest position (signed 64-bit)
MAX_MINUTES = 24 * 60
HEARTBEAT_SECONDS = 15.0
BACKLOG_CHUNK = 64 * 1024  # bytes of a tail's backlog sent in one write
_DECIMAL = re.compile(r"[0-9]{1,19}")
_FLAGS = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}


class BadRequest(Exception):
    """A query parameter the console cannot use; answered with status 400."""


def _known(request: Request, *names: str, repeatable: tuple[str, ...] = ()) -> None:
    """Refuse a parameter the route does not take, or a single one given twice."""
    for name in request.query_params:
        if name not in names:
            known = ", ".join(names) if names else "none"
            raise BadRequest(f"unknown query parameter {name!r} (this page takes: {known})")
        if name not in repeatable and len(request.query_params.getlist(name)) > 1:
            raise BadRequest(f"{name} given more than once")


def _int(
    request: Request, name: str, default: int | None, *, lower: int = 0, upper: int = MAX_POSITION
) -> Any:
    """A whole number from ``lower`` to ``upper``, written as plain ASCII digits."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    value = int(raw) if _DECIMAL.fullmatch(raw) else None
    if value is None or not lower <= value <= upper:
        raise BadRequest(f"{name} must be a whole number from {lower} to {upper}, got {raw!r}")
    return value


def _limit(request: Request) -> int:
    value: int = _int(request, "limit", PAGE_LIMIT, lower=1, upper=MAX_LIMIT)
    return value


def _flag(request: Request, name: str) -> bool:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return False
    value = _FLAGS.get(raw.lower())
    if value is None:
        raise BadRequest(f"{name} must be 1, 0, true, false, yes or no, got {raw!r}")
    return value


def _pattern(request: Request, name: str) -> str:
    """One pattern (default ``#``, every stream), checked."""
    value = request.query_params.get(name) or "#"
    parse_pattern(value)  # PatternError (an EventError): a 400
    return value


def _patterns(request: Request, name: str) -> list[str] | None:
    """A repeatable pattern filter (``streams=a.*&streams=b.*``), checked; None: all."""
    values = [v for v in request.query_params.getlist(name) if v]
    for value in values:
        parse_pattern(value)
    return values or None


def _tail_parameters(request: Request) -> tuple[list[str] | None, list[str] | None, Any, int]:
    """What ``/tail`` and ``/api/tail`` take: streams, types, from, lines."""
    _known(request, "from", "lines", "streams", "types", repeatable=("streams", "types"))
    streams, types = _patterns(request, "streams"), _patterns(request, "types")
    start = _int(request, "from", None)
    lines: int = _int(request, "lines", 20, upper=MAX_LIMIT)
    return streams, types, start, lines


def _json_response(value: Any, status: int = 200) -> Response:
    return Response(_json.dumps(value), status_code=status, media_type="application/json")


Endpoint = Callable[[Request], Awaitable[Response]]


_TITLES = {400: "Bad request", 403: "Forbidden", 404: "Not found", 500: "Internal error"}
_TITLES[503] = "Store unavailable"


def _failure(exc: Exception) -> tuple[int, str]:
    """The status and message that answer ``exc``, raised while serving a request.

    400 is for what the client sent (a query parameter, a pattern or a stream name);
    a store that cannot answer now (closed, its database unreachable) is a 503 worth
    retrying; anything else is the console's fault, a 500 whose details stay in the log.
    """
    message = " ".join(scrub(str(exc)).split()) or type(exc).__name__
    if isinstance(exc, BadRequest | PatternError):
        return 400, message
    if isinstance(exc, AccessDenied):
        return 403, message
    if isinstance(exc, StreamDeletedError):
        return 404, message
    if isinstance(exc, ClosedError) or (
        isinstance(exc, StoreError) and not isinstance(exc, EncryptionError)
    ):
        return 503, message
    return 500, "internal error"


def _guarded(endpoint: Endpoint) -> Endpoint:
    """Answer a failure with its status (JSON for the API, a short page otherwise)."""

    async def guarded(request: Request) -> Response:
        try:
            return await endpoint(request)
        except Exception as exc:
            status, message = _failure(exc)
            if status == 500:
                logger.error(
                    "console: %s %s failed", request.method, request.url.path, exc_info=exc
                )
            headers = {"Retry-After": "1"} if status == 503 else None
            if request.url.path.startswith("/api/"):
                return JSONResponse({"error": message}, status_code=status, headers=headers)
            body = _page(_TITLES[status], f"<p>{html.escape(message)}</p>")
            return HTMLResponse(body, status_code=status, headers=headers)

    return guarded


def _stream_name(request: Request) -> str:
    """The stream named in the path, checked (a name no stream can have is a 400)."""
    name: str = request.path_params["name"]
    try:
        parse_name(name, "stream name")
    except PatternError as exc:
        raise BadRequest(str(exc)) from None
    return name


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
        page = await _streams_page(store, request)
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
        if await store.stream_version(name) is None:
            return JSONResponse({"error": f"stream {name!r} does not exist"}, status_code=404)
        events = await store.get_stream(name, start, backwards=backwards, limit=limit)
        return _json_response([event.to_dict() for event in events])

    async def api_events(request: Request) -> Response:
        _known(request, "from", "limit", "streams", "types", repeatable=("streams", "types"))
        start = _int(request, "from", 0)
        limit = _limit(request)
        reader = store.read_all(
            start,
            streams=_patterns(request, "streams"),
            types=_patterns(request, "types"),
            limit=limit,
        )
        return _json_response([event.to_dict() for event in await reader])

    async def api_tail(request: Request) -> Response:
        streams, types, start, lines = _tail_parameters(request)
        resume = request.headers.get("last-event-id")
        if resume is not None and _DECIMAL.fullmatch(resume) and int(resume) < MAX_POSITION:
            start = int(resume) + 1
        backlog: list[Event] = []
        if start is None:
            backlog, start = await last_events(store, lines, streams, types)
        subscription = store.subscribe(start, streams=streams, types=types)
        return StreamingResponse(
            _sse(backlog, subscription, stopping),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

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
        if page.after is None and page.next_after is None:  # every stream is on this page
            total = sum(item["events"] for item in page.streams)
            summary = f"{page.matching} streams, {total} events."
        else:
            first = page.skipped + 1
            shown = f"{first} to {page.skipped + len(page.streams)}" if page.streams else "none"
            summary = f"{page.matching} streams ({shown} below)."
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
        events = await store.get_stream(name, start, limit=limit)
        rows = "".join(_event_row(event, event.position) for event in events)
        following = (events[-1].position or 0) + 1 if events else start
        more = (
            f'<p><a href="?from={following}&limit={limit}">next {limit}</a></p>'
            if events and following <= version
            else ""
        )
        count = await stream_length(store, name)
        body = (
            f"<p><a href='/'>all streams</a> &middot; {count} events</p>"
            f"<table><tr><th>#</th><th>type</th><th>time</th><th>data</th></tr>{rows}</table>"
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


@dataclass(frozen=True, slots=True)
class StreamsPage:
    """One page of the stream list: what ``/`` and ``/api/streams`` show."""

    pattern: str
    after: str | None  # the cursor this page starts after (None: the first page)
    limit: int
    streams: list[dict[str, Any]]  # {"name", "events"}, in name order
    matching: int  # streams matching the pattern, on every page
    skipped: int  # matching streams before this page
    next_after: str | None  # the cursor of the next page (None: this is the last)


async def _streams_page(store: EventStore, request: Request) -> StreamsPage:
    """The page a request asks for: names are listed whole (cheap), counted per page."""
    _known(request, "pattern", "after", "limit")
    pattern = _pattern(request, "pattern")
    after = request.query_params.get("after") or None
    limit = _limit(request)
    names = sorted(await store.streams(pattern))
    start = 0 if after is None else bisect.bisect_right(names, after)
    chosen = names[start : start + limit]
    counted = [{"name": name, "events": await stream_length(store, name)} for name in chosen]
    more = start + limit < len(names)
    return StreamsPage(
        pattern, after, limit, counted, len(names), start, chosen[-1] if more else None
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


def _stream_href(name: str) -> str:
    """The page of stream ``name``, percent-encoded (names may hold ``/ ? % #``)."""
    return "/streams/" + quote(name, safe="")


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


def _chart(activity: dict[str, Any]) -> str:
    """An inline SVG bar chart (no JavaScript, no external assets)."""
    values: list[int] = activity["per_minute"]
    width, height = 4 * len(values), 60
    peak = max(values) or 1
    bars = "".join(
        f'<rect x="{4 * i}" y="{height - round(height * v / peak)}" width="3" '
        f'height="{round(height * v / peak)}"><title>{v}</title></rect>'
        for i, v in enumerate(values)
        if v
    )
    chart = f'<svg class="chart" width="{width}" height="{height}" role="img" '
    return f'{chart}aria-label="appends per minute, peak {peak}">{bars}</svg>'


async def _sse(
    backlog: list[Event], live: StoreSubscription, stopping: asyncio.Event
) -> AsyncIterator[bytes]:
    """Server-Sent Events: the backlog, then live events, with heartbeats when idle.

    The stream ends when ``stopping`` is set (the server is shutting down). A
    subscription that fails (its database went away) ends the stream properly with an
    ``event: error`` message and one WARNING in the log; either way the browser's
    ``EventSource`` reconnects with ``Last-Event-ID`` and misses nothing.
    """
    for chunk in _backlog_chunks(backlog):
        yield chunk
        await asyncio.sleep(0)  # a turn for the loop: a client that has left is noticed
    iterator = live.__aiter__()
    pending: asyncio.Task[Event] | None = None
    stopped = asyncio.ensure_future(stopping.wait())
    try:
        while not stopping.is_set():
            if pending is None:
                pending = asyncio.ensure_future(iterator.__anext__())
            await asyncio.wait(
                {pending, stopped}, timeout=HEARTBEAT_SECONDS, return_when=asyncio.FIRST_COMPLETED
            )
            if stopping.is_set():
                return
            if not pending.done():
                yield b": heartbeat\n\n"
                continue
            try:
                event = pending.result()
            except StopAsyncIteration:
                return
            except Exception as exc:
                yield _sse_error(exc)
                return
            finally:
                pending = None
            yield _sse_event(event)
    finally:
        stopped.cancel()
        if pending is not None:
            pending.cancel()
        await live.aclose()


def _backlog_chunks(backlog: list[Event]) -> Iterator[bytes]:
    """The start of a tail in writes of about ``BACKLOG_CHUNK`` bytes: a comment that
    sends the headers at once, then the backlog's events.

    A write per event (up to 1,000 of them), with no turn of the event loop between,
    went on after the client had left, and asyncio logged "socket.send() raised
    exception." on the server's stderr for each client that did.
    """
    chunk, size = [b": pepperpy-event tail\n\n"], 0
    for event in backlog:
        message = _sse_event(event)
        chunk.append(message)
        size += len(message)
        if size >= BACKLOG_CHUNK:
            yield b"".join(chunk)
            chunk, size = [], 0
    if chunk:
        yield b"".join(chunk)


def _sse_error(exc: Exception) -> bytes:
    """The message that ends a live tail whose subscription failed, logged once."""
    status, message = _failure(exc)
    if status == 500:
        logger.error("console: live tail failed", exc_info=exc)
    else:
        logger.warning("console: live tail ended: %s", message)
    return b"event: error\ndata: %s\n\n" % _json.dumps({"error": message})


def _sse_event(event: Event) -> bytes:
    return b"id: %d\nevent: event\ndata: %s\n\n" % (
        event.global_position or 0,
        _json.dumps(event.to_dict()),
    )


def _event_row(event: Event, position: int | None) -> str:
    data = html.escape(_json.dumps(event.to_dict()["data"]).decode())
    when = event.timestamp.isoformat(timespec="seconds")
    return (
        f"<tr><td>{position}</td><td>{html.escape(event.type)}</td>"
        f"<td>{when}</td><td><code>{data}</code></td></tr>"
    )


def _page(title: str, body: str) -> str:
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)} - pepperpy-event</title><style>{_STYLE}</style></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )


_STYLE = (
    "body{font:14px system-ui,sans-serif;margin:2em;color:#222}"
    "table{border-collapse:collapse}td,th{padding:.25em .75em;border-bottom:1px solid #ddd;"
    "text-align:left;vertical-align:top}code{font-size:12px}#log{font:12px monospace}"
    ".chart{background:#f6f6f6;fill:#3b6ea8;margin-bottom:1em}h2{font-size:1em}"
)

TAIL_RETRY_MS = 3000  # how long the tail page waits before asking again after a refusal

# A browser's EventSource reconnects by itself only when a stream ends or the network
# fails; an answer other than 200 (a 503 while the store cannot answer, at the first
# request or after a subscription gave up) closes it for good. The page then opens a
# new one itself, after the last event it showed (``from``), until the console answers.
_TAIL_BODY = (
    """
<p><a href="/">all streams</a> &middot; <span id="state">connecting...</span></p>
<div id="log"></div>
<script>
const log = document.getElementById("log");
const state = document.getElementById("state");
let problem = "";  // the server's own "event: error" message, if it sent one
let last = null;  // the id (global position) of the last event shown
function connect() {
  const query = new URLSearchParams(window.location.search);
  if (last !== null) {  // go on after it, whatever the page's own from or lines said
    query.delete("lines");
    query.set("from", (BigInt(last) + 1n).toString());
  }
  const search = query.toString();
  const source = new EventSource("/api/tail" + (search ? "?" + search : ""));
  source.onopen = () => { problem = ""; state.textContent = "live"; };
  source.onerror = (message) => {
    if (message.data) problem = JSON.parse(message.data).error + "; ";
    if (source.readyState === EventSource.CLOSED) {  // refused: the browser gives up
      state.textContent = problem + "unavailable, trying again...";
      setTimeout(connect, RETRY_MS);
    } else {
      state.textContent = problem + "reconnecting...";
    }
  };
  source.addEventListener("event", (message) => {
    last = message.lastEventId;
    const e = JSON.parse(message.data);
    const line = document.createElement("div");
    line.textContent = `${e.global_position} ${e.stream}:${e.position} ${e.type} `
      + JSON.stringify(e.data);
    log.prepend(line);
    while (log.childElementCount > 500) log.lastChild.remove();
  });
}
connect();
</script>
"""
).replace("RETRY_MS", str(TAIL_RETRY_MS))
