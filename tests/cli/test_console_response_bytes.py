"""A page of the console's JSON API is bounded by bytes, not only by event count.

``/api/streams/NAME`` and ``/api/events`` returned up to ``limit`` events (1,000) whatever
their size: 1,000 events of 1 MB each were a 1 GB response, built whole in memory. A
page now ends before ``MAX_RESPONSE_BYTES`` (4 MiB) and its ``Link: rel="next"`` header
continues from there.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from pepperpy.event import Event, EventStore
from pepperpy.event.cli._console import console_app

CAP = 4 * 1024 * 1024  # the documented cap (docs/cli.md, "The web console")
BIG = 1_000_000
EVENTS = 12


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with EventStore(f"sqlite:///{tmp_path}/events.db") as store:
        await store.append("small.1", [Event("small.x", {"n": n}) for n in range(3)])
        for n in range(EVENTS):  # one append each: a transaction of 12 MB is not the point
            await store.append("big.1", Event("big.x", {"n": n, "blob": "x" * BIG}))
        await store.append("huge.1", Event("huge.x", {"blob": "y" * (CAP + 1)}))
        await store.append("small.1", Event("small.x", {"n": 3}))
        transport = httpx.ASGITransport(app=console_app(store))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            yield http


async def _pages(client: httpx.AsyncClient, url: str) -> list[list[dict[str, Any]]]:
    """Every page from ``url`` on, following ``Link: rel="next"``."""
    pages: list[list[dict[str, Any]]] = []
    next_url: str | None = url
    while next_url is not None:
        response = await client.get(next_url)
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(response.content) <= CAP or len(page) == 1
        pages.append(page)
        next_url = response.links.get("next", {}).get("url")
        assert len(pages) <= 20, "no end to the pages"
    return pages


async def test_a_stream_page_ends_at_the_byte_cap_and_links_on(
    client: httpx.AsyncClient,
) -> None:
    pages = await _pages(client, "/api/streams/big.1")
    assert [len(page) for page in pages] == [4, 4, 4]
    assert [e["data"]["n"] for page in pages for e in page] == list(range(EVENTS))
    backwards = await _pages(client, "/api/streams/big.1?backwards=1&limit=3")
    assert [len(page) for page in backwards] == [3, 3, 3, 3]  # limit first
    assert [e["position"] for page in backwards for e in page] == list(reversed(range(EVENTS)))
    # an event larger than the cap is sent alone
    huge = await client.get("/api/streams/huge.1")
    assert len(huge.json()) == 1 and len(huge.content) > CAP and "link" not in huge.headers


async def test_a_log_page_ends_at_the_byte_cap_and_links_on(client: httpx.AsyncClient) -> None:
    pages = await _pages(client, "/api/events?types=big.*&limit=1000")
    assert [len(page) for page in pages] == [4, 4, 4]
    assert [e["data"]["n"] for page in pages for e in page] == list(range(EVENTS))
    first = await client.get("/api/events?types=big.*&types=small.*&limit=1000")
    assert first.links["next"]["url"] == (
        "/api/events?types=big.%2A&types=small.%2A&limit=1000&from=7"
    )  # small.1's first 3 events, then big.1's first 4
    everything = await _pages(client, "/api/events?limit=1000")
    got = [(e["stream"], e["position"]) for page in everything for e in page]
    assert got == (
        [("small.1", n) for n in range(3)]
        + [("big.1", n) for n in range(EVENTS)]
        + [("huge.1", 0), ("small.1", 3)]
    )


async def test_small_events_fill_the_page_and_a_full_page_links_on(
    client: httpx.AsyncClient,
) -> None:
    first = await client.get("/api/streams/small.1", params={"limit": 3})
    assert [e["data"]["n"] for e in first.json()] == [0, 1, 2]
    assert first.links["next"]["url"] == "/api/streams/small.1?limit=3&from=3"
    last = await client.get(first.links["next"]["url"])
    assert [e["data"]["n"] for e in last.json()] == [3] and "link" not in last.headers
    whole = await client.get("/api/streams/small.1")
    assert len(whole.json()) == 4 and "link" not in whole.headers
