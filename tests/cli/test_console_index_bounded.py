"""The index page reads a bounded number of stream names per view, however many
streams the store holds.

To show its totals, ``/`` went through every matching stream name at each view: with
millions of streams (one per aggregate), every reload walked them all. It now counts at
most ``COUNTED_NAMES`` names and says "more than" past them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from pepperpy.event import Event, EventStore
from pepperpy.event.store import MemoryBackend

COUNTED = 10_000  # the documented bound (docs/cli.md, "The web console")
STREAMS = COUNTED + 2_500


class CountingNames(MemoryBackend):
    """A memory backend that counts the stream names it hands out."""

    def __init__(self) -> None:
        super().__init__()
        self.names_read = 0

    async def stream_names_page(
        self, after: str | None, limit: int, prefix: str | None = None
    ) -> list[str]:
        page = await super().stream_names_page(after, limit, prefix)
        self.names_read += len(page)
        return page


@pytest.fixture
async def backend() -> AsyncIterator[CountingNames]:
    backend = CountingNames()
    async with EventStore(backend) as store:
        await store.append_streams({f"s.{n:05d}": Event("t.x", {}) for n in range(STREAMS)})
        await store.append("other.1", [Event("t.x", {}), Event("t.x", {})])
        yield backend


@pytest.fixture
async def client(backend: CountingNames) -> AsyncIterator[httpx.AsyncClient]:
    from pepperpy.event.cli._console import console_app

    store = EventStore(backend)
    transport = httpx.ASGITransport(app=console_app(store))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        yield http


async def _index(
    client: httpx.AsyncClient, backend: CountingNames, **params: str
) -> tuple[str, int]:
    backend.names_read = 0
    page = await client.get("/", params=params)
    assert page.status_code == 200, page.text
    return page.text, backend.names_read


async def test_the_index_counts_a_bounded_number_of_names(
    client: httpx.AsyncClient, backend: CountingNames
) -> None:
    bound = COUNTED + 1000 + 101  # the names counted (a page of 1,000 more), the page's
    text, read = await _index(client, backend)
    assert "More than 10,000 streams (1 to 100 below)." in text
    assert read <= bound
    assert 'href="/?after=s.00098">next 100</a>' in text
    # a cursor among the names counted: the page's place is known
    text, read = await _index(client, backend, after="s.00099", limit="50")
    assert "More than 10,000 streams (102 to 151 below)." in text
    assert '<a href="/streams/s.00100">s.00100</a></td><td>1</td>' in text
    assert read <= bound
    # past them: the page's streams, without a place
    text, read = await _index(client, backend, after="s.12000")
    assert "More than 10,000 streams (100 below, after the first 10,000)." in text
    assert '<a href="/streams/s.12000">' not in text
    assert '<a href="/streams/s.12001">s.12001</a></td><td>1</td>' in text
    assert read <= bound
    text, read = await _index(client, backend, after="s.12499")
    assert "More than 10,000 streams (none below)." in text
    assert "next 100" not in text
    # a pattern matching fewer: counted exactly, totals when all are on the page
    text, read = await _index(client, backend, pattern="other.*")
    assert "1 stream, 2 events." in text
    text, read = await _index(client, backend, pattern="s.*", after="s.00010", limit="5")
    assert "More than 10,000 streams (12 to 16 below)." in text
