"""The console's status codes: 400 only for what the client sent.

A database outage, a closed store and an event that cannot be decoded were all
answered "400 Bad request", which tells a script or a monitor not to retry and hides a
server-side bug.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator

import httpx
import pytest
import uvicorn

from pepperpy.event import Event, EventStore
from pepperpy.event._errors import (
    AccessDenied,
    EncryptionError,
    SerializationError,
    StoreError,
    StreamDeletedError,
)
from pepperpy.event.cli._console import console_app
from pepperpy.event.store.base import LogPage, MinuteCountRow, StreamState
from pepperpy.event.store.memory import MemoryBackend

#: the store's logger: a subscription warns there when its store starts failing
LOGGER = "pepperpy.event.store"

PATHS = ["/", "/api/streams", "/api/events", "/api/streams/a.1", "/streams/a.1", "/api/stats"]


class FailingBackend(MemoryBackend):
    """A memory backend whose reads raise ``failure`` once it is set."""

    failure: Exception | None = None

    def _fail(self) -> None:
        if self.failure is not None:
            raise self.failure

    async def read_all(self, from_position: int, limit: int) -> LogPage:
        self._fail()
        return await super().read_all(from_position, limit)

    async def stream_state(self, stream: str) -> StreamState | None:
        self._fail()
        return await super().stream_state(stream)

    async def stream_names(self) -> list[str]:
        self._fail()
        return await super().stream_names()

    async def stream_names_page(
        self, after: str | None, limit: int, prefix: str | None = None
    ) -> list[str]:
        self._fail()
        return await super().stream_names_page(after, limit, prefix)

    async def count_by_minute(self, since: int) -> list[MinuteCountRow]:
        self._fail()
        return await super().count_by_minute(since)


@pytest.fixture
async def backend() -> FailingBackend:
    return FailingBackend()


@pytest.fixture
async def client(backend: FailingBackend) -> AsyncIterator[httpx.AsyncClient]:
    store = EventStore(backend)
    await store.append("a.1", Event("t.x", {"n": 1}))
    transport = httpx.ASGITransport(app=console_app(store))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8080") as http:
        yield http
    await store.close()


async def test_everything_answers_while_the_backend_works(client: httpx.AsyncClient) -> None:
    for path in PATHS:
        assert (await client.get(path)).status_code == 200, path


@pytest.mark.parametrize("path", PATHS)
async def test_a_store_outage_is_503_with_retry_after(
    client: httpx.AsyncClient, backend: FailingBackend, path: str
) -> None:
    backend.failure = StoreError("PostgreSQL read_all failed: unexpected connection_lost() call")
    answer = await client.get(path)
    assert answer.status_code == 503, answer.text
    assert answer.headers["retry-after"] == "1"
    assert "connection_lost" in answer.text
    if path.startswith("/api/"):
        assert answer.json() == {
            "error": "PostgreSQL read_all failed: unexpected connection_lost() call"
        }
    else:
        assert answer.headers["content-type"].startswith("text/html")
        assert "Store unavailable" in answer.text


async def test_a_closed_store_is_503() -> None:
    store = EventStore()
    await store.append("a.1", Event("t.x", {}))
    transport = httpx.ASGITransport(app=console_app(store))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        await store.close()
        for path in PATHS:
            answer = await http.get(path)
            assert answer.status_code == 503, (path, answer.text)
            assert answer.headers["retry-after"] == "1"


@pytest.mark.parametrize(
    ("failure", "status"),
    [
        (AccessDenied("mallory", "read", "a.1"), 403),
        (StreamDeletedError("stream 'a.1' was deleted"), 404),
        (EncryptionError("no key for stream 'a.1'"), 500),
        (SerializationError("stored event 3: invalid JSON"), 500),
        (ValueError("a bug in the console"), 500),
        (RuntimeError("a bug in the console"), 500),
    ],
)
async def test_other_failures_get_their_own_status(
    client: httpx.AsyncClient,
    backend: FailingBackend,
    caplog: pytest.LogCaptureFixture,
    failure: Exception,
    status: int,
) -> None:
    backend.failure = failure
    caplog.set_level(logging.ERROR)
    answer = await client.get("/api/events")
    assert answer.status_code == status, answer.text
    assert "retry-after" not in answer.headers
    logged = [r for r in caplog.records if r.name == "pepperpy.event.console"]
    if status == 500:
        assert answer.json() == {"error": "internal error"}  # details stay in the log
        assert len(logged) == 1 and logged[0].exc_info is not None
        assert logged[0].getMessage() == "console: GET /api/events failed"
    else:
        assert answer.json()["error"] == str(failure)
        assert logged == []
    page = await client.get("/")
    assert page.status_code == status and "<h1>" in page.text


@pytest.mark.parametrize(
    "path",
    ["/api/events?streams=a..b", "/api/streams?pattern=us*r", "/api/streams/a..b", "/streams/a.*"],
)
async def test_bad_input_is_still_400(
    client: httpx.AsyncClient, backend: FailingBackend, path: str
) -> None:
    backend.failure = StoreError("never reached: the input is refused first")
    answer = await client.get(path)
    assert answer.status_code == 400, answer.text
    named = "invalid stream name" if "/streams/" in path else "invalid pattern"
    assert named in answer.text


#: how a live tail over a LosingBackend ends once its subscription gives up (the
#: duration and the count of tries between the two vary)
GAVE_UP = "subscription at global position 1: the store could not be read for "
LOST = "retry_for=0.2): PostgreSQL read_all failed: unexpected connection_lost() call; "


@pytest.fixture
def short_outages(monkeypatch: pytest.MonkeyPatch) -> None:
    """Subscriptions try a failing store again for 0.2 s, not the default 60 s."""
    subscribe = functools.partialmethod(EventStore.subscribe, retry_for=0.2)
    monkeypatch.setattr(EventStore, "subscribe", subscribe)


class LosingBackend(MemoryBackend):
    """A memory backend that loses its database after the first event of the log."""

    async def read_all(self, from_position: int, limit: int) -> LogPage:
        if from_position >= 1:
            raise StoreError("PostgreSQL read_all failed: unexpected connection_lost() call")
        return await super().read_all(from_position, limit)

    async def wait(self, position: int) -> None:
        raise StoreError("PostgreSQL read_all failed: unexpected connection_lost() call")


async def test_a_live_tail_that_loses_its_store_ends_with_an_error_event(
    caplog: pytest.LogCaptureFixture, short_outages: None
) -> None:
    """The StoreError escaped the stream: an unterminated chunked body, two tracebacks."""
    store = EventStore(LosingBackend())
    await store.append("a.1", Event("t.x", {"n": 1}))
    caplog.set_level(logging.WARNING)
    transport = httpx.ASGITransport(app=console_app(store))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        answer = await http.get("/api/tail", params={"from": 0})
    await store.close()
    assert answer.status_code == 200
    messages = answer.text.split("\n\n")
    assert messages[0] == ": pepperpy-event tail"
    assert messages[1].startswith("id: 0\nevent: event\ndata: ")
    error = [message for message in messages[2:] if message != ": heartbeat"]
    assert len(error) == 2 and error[1] == ""
    assert error[0].startswith('event: error\ndata: {"error":"' + GAVE_UP)
    assert LOST in error[0]
    logged = [(r.levelname, r.getMessage()) for r in caplog.records if r.name != LOGGER]
    assert len(logged) == 1 and logged[0][0] == "WARNING"
    assert logged[0][1].startswith("console: live tail ended: " + GAVE_UP)


async def test_over_http_the_tail_ends_cleanly(
    caplog: pytest.LogCaptureFixture, short_outages: None
) -> None:
    """Over uvicorn: the client reads a complete body (no RemoteProtocolError), no traceback."""
    store = EventStore(LosingBackend())
    await store.append("a.1", Event("t.x", {"n": 1}))
    config = uvicorn.Config(console_app(store), port=0, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            assert not serving.done(), "the server did not start"
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        async with httpx.AsyncClient(timeout=10) as http:
            answer = await http.get(f"http://127.0.0.1:{port}/api/tail?from=0")
        assert answer.status_code == 200
        assert 'event: error\ndata: {"error":"' + GAVE_UP in answer.text
        assert LOST in answer.text and answer.text.endswith('"}\n\n')
    finally:
        server.should_exit = True
        await serving
        await store.close()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
