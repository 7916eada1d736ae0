"""A long stream's page links to its newest events and back, not only to the next page.

A stream page linked only to the next page: reaching the newest of 100,000 events took
a hundred clicks of "next 1000", or editing the URL.
"""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from pepperpy.event import Event, EventStore
from pepperpy.event.cli._console import console_app

EVENTS = 2_500


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with EventStore(f"sqlite:///{tmp_path}/events.db") as store:
        await store.append("big.1", [Event("t.x", {"n": n}) for n in range(EVENTS)])
        transport = httpx.ASGITransport(app=console_app(store))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            yield http


async def _links(client: httpx.AsyncClient, query: str) -> dict[str, str]:
    page = await client.get("/streams/big.1" + query)
    assert page.status_code == 200
    found = re.findall(r'<a href="(\?[^"]*)">([^<]*)</a>', page.text)
    return {text: html.unescape(href) for href, text in found}


async def test_pages_link_first_previous_next_and_newest(client: httpx.AsyncClient) -> None:
    assert await _links(client, "?limit=1000") == {
        "next 1000": "?from=1000&limit=1000",
        "newest 1000": "?from=1500&limit=1000",
    }
    assert await _links(client, "?from=1000&limit=1000") == {
        "first 1000": "?from=0&limit=1000",
        "previous 1000": "?from=0&limit=1000",
        "next 1000": "?from=2000&limit=1000",
        "newest 1000": "?from=1500&limit=1000",
    }
    newest = await client.get("/streams/big.1?from=1500&limit=1000")
    assert "<tr><td>2499</td>" in newest.text  # the last event is on the newest page
    assert await _links(client, "?from=1500&limit=1000") == {
        "first 1000": "?from=0&limit=1000",
        "previous 1000": "?from=500&limit=1000",
    }
    # past the end: back to the last page
    assert (await _links(client, "?from=9000&limit=1000"))["previous 1000"] == (
        "?from=1500&limit=1000"
    )
