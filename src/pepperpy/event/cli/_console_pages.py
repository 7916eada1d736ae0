"""The web console's HTML: the page frame, its style, a table row per event, the chart
of appends per minute, and the live tail's page (its script reconnects by itself)."""

from __future__ import annotations

import base64
import hashlib
import html
from typing import Any
from urllib.parse import quote

from .. import _json
from .._event import Event

__all__ = ["CONTENT_SECURITY_POLICY", "DATA_SHOWN", "TAIL_RETRY_MS"]


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


def _stream_href(name: str) -> str:
    """The page of stream ``name``, percent-encoded (names may hold ``/ ? % #``)."""
    return "/streams/" + quote(name, safe="")


#: characters of an event's data shown in a stream page's row: a page of 1,000 events of
#: megabytes each was a page of gigabytes, built whole in memory (the API has it all)
DATA_SHOWN = 2_000


def _data_text(event: Event) -> str:
    """The event's data as JSON text: what a row shows the start of."""
    return _json.dumps(event.to_dict()["data"]).decode()


def _event_row(event: Event, position: int | None, text: str) -> str:
    """A stream page's row for ``event``, its data ``text`` (``_data_text``) cut at
    :data:`DATA_SHOWN` characters."""
    data = f"<code>{html.escape(text[:DATA_SHOWN])}</code>"
    if len(text) > DATA_SHOWN:  # the rest: the event alone, from the API
        whole = f"/api{_stream_href(event.stream or '')}?from={position}&limit=1"
        more = f"... {len(text) - DATA_SHOWN} more characters"
        data += f' <a href="{html.escape(whole)}">{more}</a>'
    when = event.timestamp.isoformat(timespec="seconds")
    return (
        f"<tr><td>{position}</td><td>{html.escape(event.type)}</td>"
        f"<td>{when}</td><td>{data}</td></tr>"
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
_TAIL_SCRIPT = (
    """
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
"""
).replace("RETRY_MS", str(TAIL_RETRY_MS))
_TAIL_BODY = (
    '<p><a href="/">all streams</a> &middot; <span id="state">connecting...</span></p>'
    f'<div id="log"></div><script>{_TAIL_SCRIPT}</script>'
)


def _sha256(text: str) -> str:
    """The CSP source that allows one inline ``<script>`` or ``<style>``: its hash."""
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


#: on every response (``_hosts``): the pages' own inline script and style run, and
#: nothing else: no other script (an event's text that slipped through unescaped stays
#: inert), no plugin, no form, no ``<base>``, no fetch but to the console itself, no
#: framing by another site
CONTENT_SECURITY_POLICY = (
    f"default-src 'none'; script-src {_sha256(_TAIL_SCRIPT)}; style-src {_sha256(_STYLE)}; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
