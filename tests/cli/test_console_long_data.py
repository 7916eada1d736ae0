"""A stream page shows the start of a long event's data, with a link to the whole event.

Each row held its event's data whole: a page of 1,000 events of a few megabytes each was
a page of gigabytes, built in memory as one string, that no browser could show.
"""

from __future__ import annotations

import html
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from pepperpy.event import Event, EventStore
from pepperpy.event.cli._console import console_app
from pepperpy.event.cli._console_pages import DATA_SHOWN

EVENTS, SIZE = 20, 200_000
NAME = "tenant/a?b.1"


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with EventStore(f"sqlite:///{tmp_path}/events.db") as store:
        await store.append(
            NAME, [Event("t.x", {"text": "<" * SIZE, "n": n}) for n in range(EVENTS)]
        )
        await store.append(NAME, Event("t.short", {"text": "<b>"}))
        transport = httpx.ASGITransport(app=console_app(store))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            yield http


async def test_a_page_of_long_events_stays_small(client: httpx.AsyncClient) -> None:
    page = await client.get("/streams/tenant%2Fa%3Fb.1")
    assert page.status_code == 200
    # each row shows DATA_SHOWN characters (escaped: "<" is "&lt;"), not SIZE
    assert len(page.content) < EVENTS * DATA_SHOWN * len("&lt;") + 20_000
    more = len('{"n":0,"text":""}') + SIZE - DATA_SHOWN
    assert f"... {more} more characters</a>" in page.text
    assert html.escape('{"text":"<b>"}') in page.text  # a short one is shown whole
    # the link leads to the whole event
    link = html.unescape(page.text.split('<a href="/api/streams/')[1].split('"')[0])
    assert link == "tenant%2Fa%3Fb.1?from=0&limit=1"
    whole = (await client.get("/api/streams/" + link)).json()
    assert [(e["stream"], e["position"], len(e["data"]["text"])) for e in whole] == [
        (NAME, 0, SIZE)
    ]
