"""The console's stream list and the ``streams`` command read stream names a page at a
time (``EventStore.iter_streams``), never every name at once.

Both called ``EventStore.streams()``, which loads every stream name
(``StoreBackend.stream_names``) on each view or run: with one stream per aggregate,
millions of names in memory, however small the page shown.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from pepperpy.event import Event, EventStore
from pepperpy.event.cli._console import console_app
from pepperpy.event.cli._counts import stream_counts
from pepperpy.event.store import MemoryBackend

NAMES = [f"many.{i:03d}" for i in range(25)] + ["other.1"]


class PagedOnly(MemoryBackend):
    """A memory backend that refuses to list every name, and records the pages asked."""

    def __init__(self) -> None:
        super().__init__()
        self.pages: list[tuple[str | None, int, str | None]] = []

    async def stream_names(self) -> list[str]:
        raise AssertionError("every stream name was read")

    async def stream_names_page(
        self, after: str | None, limit: int, prefix: str | None = None
    ) -> list[str]:
        self.pages.append((after, limit, prefix))
        return await super().stream_names_page(after, limit, prefix)


@pytest.fixture
async def store() -> AsyncIterator[EventStore]:
    async with EventStore(PagedOnly()) as store:
        await store.append_streams({name: Event("t.x", {}) for name in NAMES})
        await store.append("many.000", Event("t.x", {}))
        store.backend.pages.clear()  # type: ignore[attr-defined]
        yield store


@pytest.fixture
async def client(store: EventStore) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=console_app(store))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        yield http


def _pages(store: EventStore) -> list[tuple[str | None, int, str | None]]:
    pages: list[tuple[str | None, int, str | None]] = store.backend.pages  # type: ignore[attr-defined]
    return pages


async def test_the_api_reads_the_page_after_its_cursor(
    client: httpx.AsyncClient, store: EventStore
) -> None:
    first = await client.get("/api/streams", params={"pattern": "many.*", "limit": 10})
    assert first.status_code == 200
    assert [item["name"] for item in first.json()] == NAMES[:10]
    assert first.json()[0]["events"] == 2
    assert first.links["next"]["url"] == "/api/streams?pattern=many.%2A&after=many.009&limit=10"
    # one read of the page and one more name (is there a next page?), under the prefix
    assert _pages(store) == [(None, 11, "many")]
    _pages(store).clear()
    last = await client.get(first.links["next"]["url"].replace("009", "019"))
    assert [item["name"] for item in last.json()] == NAMES[20:25]
    assert "link" not in last.headers
    assert _pages(store) == [("many.019", 11, "many")]


async def test_the_index_counts_through_pages_of_names(
    client: httpx.AsyncClient, store: EventStore
) -> None:
    index = (await client.get("/", params={"after": "many.009", "limit": 10})).text
    assert "26 streams (11 to 20 below)" in index
    assert 'href="/?after=many.019&amp;limit=10">next 10</a>' in index
    # the page after its cursor (and one name more), then the names counted
    assert _pages(store) == [("many.009", 11, None), (None, 1000, None)]


async def test_the_streams_command_counts_pages_of_names(store: EventStore) -> None:
    got = [line async for page in stream_counts(store, "many.#") for line in page]
    assert got == [("many.000", 2)] + [(name, 1) for name in NAMES[1:25]]
    assert _pages(store) == [(None, 1000, "many")]
