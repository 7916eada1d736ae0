"""A console whose principal may read some streams only can tail them.

``/api/tail`` started from the store's head, which needs ``read`` on the whole log (it
tells how busy every stream is), so such a console got a 403 unless ``from=`` was given
(audit 8). With ``streams=`` it now starts from the newest of the matching events, read
back from the top; without, it is still refused.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from pepperpy.event import EventStore
from pepperpy.event.security import AccessControl
from tests.cli.test_console import client, read_sse

__all__ = ["client"]  # the fixture, serving this module's store


@pytest.fixture
async def store() -> AsyncIterator[EventStore]:
    access = AccessControl(default="deny")
    access.allow("#", "append", "#")
    access.allow("anonymous", "read", "orders.#")
    async with EventStore(access=access) as events:
        yield events


async def test_tail_of_the_streams_it_may_read(
    client: httpx.AsyncClient, store: EventStore
) -> None:
    for stream in ("orders.1", "salaries.1", "orders.2", "salaries.2"):
        await store.append(stream, {"type": "x.happened"})
    refused = await client.get("/api/tail", params={"lines": "1"})
    assert refused.status_code == 403  # every stream: the head, not for this principal
    params = {"streams": "orders.#", "lines": "1"}
    async with client.stream("GET", "/api/tail", params=params) as response:
        assert response.status_code == 200
        lines = response.aiter_lines()
        backlog = await asyncio.wait_for(read_sse(lines, 1), 10)
        assert [(ident, event["stream"]) for ident, event in backlog] == [(2, "orders.2")]
        await store.append("salaries.3", {"type": "x.happened"})
        await store.append("orders.3", {"type": "x.happened"})
        live = await asyncio.wait_for(read_sse(lines, 1), 10)
        assert [(ident, event["stream"]) for ident, event in live] == [(5, "orders.3")]


async def test_tail_of_no_event_yet_follows_from_the_start(
    client: httpx.AsyncClient, store: EventStore
) -> None:
    await store.append("salaries.1", {"type": "x.happened"})
    params = {"streams": "orders.#", "lines": "5"}
    async with client.stream("GET", "/api/tail", params=params) as response:
        assert response.status_code == 200
        lines = response.aiter_lines()
        await store.append("orders.1", {"type": "x.happened"})
        live = await asyncio.wait_for(read_sse(lines, 1), 10)
        assert [(ident, event["stream"]) for ident, event in live] == [(1, "orders.1")]
