"""The web console (``pepperpy-event serve``), over real HTTP on loopback."""

from __future__ import annotations

import asyncio
import html
import json
import re
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
import uvicorn

from pepperpy.event import NO_STREAM, Event, EventStore
from pepperpy.event.cli._console import console_app

from .conftest import command_env, start_command


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[EventStore]:
    async with EventStore(f"sqlite:///{tmp_path}/events.db") as events:
        await events.append("user.1", [Event("user.created", {"name": "<b>Ann</b>"})])
        await events.append("user.1", Event("user.renamed", {"name": "Anna"}))
        await events.append("order.1", Event("order.placed", {"amount": 5}))
        yield events


@pytest.fixture
async def client(store: EventStore) -> AsyncIterator[httpx.AsyncClient]:
    config = uvicorn.Config(
        console_app(store), host="127.0.0.1", port=0, log_level="error", lifespan="off"
    )
    server = uvicorn.Server(config)
    config.timeout_graceful_shutdown = 1
    serving = asyncio.create_task(server.serve())
    while not server.started:
        assert not serving.done(), "the server did not start"
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
        yield http
    server.should_exit = True
    await store.close()  # ends open tails so the server can stop
    await serving


async def test_api_lists_streams_and_events(client: httpx.AsyncClient) -> None:
    streams = (await client.get("/api/streams")).json()
    assert streams == [{"name": "order.1", "events": 1}, {"name": "user.1", "events": 2}]
    assert (await client.get("/api/streams", params={"pattern": "user.*"})).json() == [
        {"name": "user.1", "events": 2}
    ]
    events = (await client.get("/api/streams/user.1")).json()
    assert [(e["position"], e["type"]) for e in events] == [
        (0, "user.created"),
        (1, "user.renamed"),
    ]
    newest = (await client.get("/api/streams/user.1", params={"backwards": "1", "limit": 1})).json()
    assert [e["type"] for e in newest] == ["user.renamed"]
    log = (await client.get("/api/events", params={"from": 1, "types": "user.*"})).json()
    assert [(e["global_position"], e["type"]) for e in log] == [(1, "user.renamed")]


async def test_api_errors(client: httpx.AsyncClient) -> None:
    missing = await client.get("/api/streams/nobody.home")
    assert missing.status_code == 404 and "does not exist" in missing.json()["error"]
    for params in ({"from": "x"}, {"from": "-1"}, {"types": "us*r"}, {"limit": "many"}):
        bad = await client.get("/api/events", params=params)
        assert bad.status_code == 400, params
        assert bad.json()["error"]


async def test_pages_render_and_escape(client: httpx.AsyncClient) -> None:
    index = await client.get("/")
    assert index.status_code == 200 and "2 streams, 3 events" in index.text
    assert 'href="/streams/user.1"' in index.text
    page = await client.get("/streams/user.1")
    assert page.status_code == 200
    assert "&lt;b&gt;Ann&lt;/b&gt;" in page.text and "<b>Ann</b>" not in page.text
    paged = await client.get("/streams/user.1", params={"limit": 1})
    assert "?from=1&limit=1" in paged.text
    assert (await client.get("/streams/nobody.home")).status_code == 404
    assert (await client.get("/streams/user.1", params={"from": "x"})).status_code == 400
    tail = await client.get("/tail")
    assert tail.status_code == 200 and "EventSource" in tail.text


async def read_sse(lines: AsyncIterator[str], count: int) -> list[tuple[int, dict[str, object]]]:
    """The next ``count`` events of an SSE stream as (id, parsed data)."""
    found: list[tuple[int, dict[str, object]]] = []
    ident = None
    async for line in lines:
        if line.startswith("id: "):
            ident = int(line[4:])
        elif line.startswith("data: "):
            assert ident is not None
            found.append((ident, json.loads(line[6:])))
            if len(found) == count:
                return found
    raise AssertionError("the stream ended early")


async def test_tail_streams_backlog_then_live_events(
    client: httpx.AsyncClient, store: EventStore
) -> None:
    async with client.stream("GET", "/api/tail", params={"lines": 2}) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = response.aiter_lines()
        backlog = await asyncio.wait_for(read_sse(lines, 2), 10)
        assert [ident for ident, _ in backlog] == [1, 2]
        await store.append("user.2", Event("user.created", {"name": "Bo"}))
        live = await asyncio.wait_for(read_sse(lines, 1), 10)
        assert live[0][0] == 3 and live[0][1]["stream"] == "user.2"


async def test_tail_resumes_from_last_event_id_and_filters(
    client: httpx.AsyncClient, store: EventStore
) -> None:
    headers = {"Last-Event-ID": "0"}
    params = {"types": "user.*"}
    async with client.stream("GET", "/api/tail", params=params, headers=headers) as response:
        lines = response.aiter_lines()
        first = await asyncio.wait_for(read_sse(lines, 1), 10)
        assert first[0][0] == 1  # after event 0; order.placed (2) is filtered out
        await store.append("order.2", Event("order.placed", {}))
        await store.append("user.3", Event("user.created", {}))
        nxt = await asyncio.wait_for(read_sse(lines, 1), 10)
        assert nxt[0][1]["type"] == "user.created" and nxt[0][0] == 4


@pytest.mark.slow
def test_serve_command_answers_and_stops_cleanly(tmp_path: Path) -> None:
    async def fill() -> None:
        async with EventStore(f"sqlite:///{tmp_path}/events.db") as events:
            await events.append("user.1", Event("user.created", {}))

    asyncio.run(fill())
    process = start_command("serve", "--port", "0", cwd=tmp_path)
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
        assert banner.startswith("pepperpy-event console on http://127.0.0.1:"), banner
        url = banner.split()[3]
        answer = httpx.get(url + "api/streams", timeout=10)
        assert answer.json() == [{"name": "user.1", "events": 1}]
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert "Traceback" not in err


async def test_stats_chart_counts_recent_appends(client: httpx.AsyncClient) -> None:
    stats = (await client.get("/api/stats", params={"minutes": 5})).json()
    assert stats["minutes"] == 5 and len(stats["per_minute"]) == 5
    assert sum(stats["per_minute"]) == 3 and stats["per_minute"][-1] >= 1
    assert stats["by_type"] == {"order.placed": 1, "user.created": 1, "user.renamed": 1}
    index = await client.get("/")
    assert "<svg" in index.text and "<rect" in index.text
    assert (await client.get("/api/stats", params={"minutes": "x"})).status_code == 400


@pytest.mark.parametrize("host", ["127.0.0.1", "no.such.host.invalid"])
def test_serve_says_when_it_cannot_listen(host: str, tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        done = subprocess.run(
            [sys.executable, "-m", "pepperpy.event", "serve", "--host", host, "--port", port],
            cwd=tmp_path,
            env=command_env({"PEPPERPY_EVENT_STORE": "memory://"}),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith(f"pepperpy-event: error: could not listen on {host}:{port}: ")
    assert len(done.stderr.splitlines()) == 1, done.stderr


async def test_counts_are_visible_events_after_a_delete(
    client: httpx.AsyncClient, store: EventStore
) -> None:
    await store.append("gone.1", [Event("old", {"i": i}) for i in range(3)])
    await store.delete_stream("gone.1")
    again = [Event("new", {"i": 1}), Event("new", {"i": 2})]
    await store.append("gone.1", again, expected_version=NO_STREAM)
    listed = (await client.get("/api/streams", params={"pattern": "gone.*"})).json()
    assert listed == [{"name": "gone.1", "events": 2}]
    assert "3 streams, 5 events" in (await client.get("/")).text
    page = await client.get("/streams/gone.1")
    assert "2 events" in page.text and page.text.count("<td>new</td>") == 2
    first = await client.get("/streams/gone.1", params={"limit": 1})
    assert "?from=4&limit=1" in first.text  # the next page starts after position 3


async def test_any_stream_name_has_a_working_link(
    client: httpx.AsyncClient, store: EventStore
) -> None:
    names = ["tenant/a.1", "a?b", "x%20y", "semi;colon&amp"]
    for name in names:
        await store.append(name, Event("odd.name", {"name": name}))
    index = (await client.get("/")).text
    links = re.findall(r'href="(/streams/[^"]*)"', index)
    for name in names:
        link = "/streams/" + quote(name, safe="")
        assert link in links, (name, links)
        page = await client.get(link)
        assert page.status_code == 200, (name, page.text)
        assert html.escape(json.dumps({"name": name}, separators=(",", ":"))) in page.text
        api = await client.get("/api" + link)
        assert api.status_code == 200, (name, api.text)
        assert [e["data"] for e in api.json()] == [{"name": name}]


BAD_QUERIES = [
    "/api/streams/user.1?backwards=maybe",
    "/api/streams/user.1?backwards=2",
    "/api/streams/user.1?limit=0",
    "/api/streams/user.1?limit=1001",
    "/api/streams/user.1?from=%2B1",  # int() takes "+1", " 1", "1_0" and "١": not here
    "/api/streams/user.1?from=1_0",
    "/api/streams/user.1?from=%D9%A1",
    "/api/streams/user.1?from=99999999999999999999",
    "/api/streams/user.1?form=1",  # a typo is not ignored
    "/api/streams/user.1?from=1&from=2",
    "/api/stats?minutes=0",
    "/api/stats?minutes=1441",
    "/api/stats?minutes=abc",
    "/api/stats?hours=1",
    "/api/streams?pattern=us*r",
    "/api/streams?limit=-1",
    "/api/streams?page=2",
    "/api/events?limit=1001",
    "/api/events?streams=a..b",
    "/api/tail?lines=x",
    "/api/tail?types=us*r",
    "/api/tail?from=-1",
]


@pytest.mark.parametrize("query", BAD_QUERIES)
async def test_bad_query_parameters_get_400(client: httpx.AsyncClient, query: str) -> None:
    """backwards=maybe and minutes=0 were answered 200, as if they were fine."""
    answer = await client.get(query)
    assert answer.status_code == 400, (query, answer.text)
    assert answer.headers["content-type"].startswith("application/json")
    assert answer.json()["error"]


@pytest.mark.parametrize(
    "query",
    ["/?limit=0", "/?pattern=us*r", "/?x=1", "/streams/user.1?from=-1", "/streams/user.1?to=1"]
    + ["/tail?lines=x", "/tail?types=us*r", "/tail?nonsense=1"],
)
async def test_bad_query_parameters_of_pages_get_400(client: httpx.AsyncClient, query: str) -> None:
    answer = await client.get(query)
    assert answer.status_code == 400, (query, answer.text)
    assert "Bad request" in answer.text


async def test_good_query_parameters_still_work(client: httpx.AsyncClient) -> None:
    for flag, first in (("true", "user.renamed"), ("NO", "user.created"), ("", "user.created")):
        answer = await client.get("/api/streams/user.1", params={"backwards": flag})
        assert answer.status_code == 200 and answer.json()[0]["type"] == first, flag
    assert (await client.get("/api/stats", params={"minutes": 1440})).json()["minutes"] == 1440
    both = await client.get("/api/events", params=[("types", "user.*"), ("types", "order.*")])
    assert len(both.json()) == 3
    assert (await client.get("/tail", params={"lines": 5, "types": "user.*"})).status_code == 200


async def test_streams_are_paged(client: httpx.AsyncClient, store: EventStore) -> None:
    """/ and /api/streams counted every stream of the store on every request."""
    names = [f"many.{n:03d}" for n in range(250)]
    for name in names:
        await store.append(name, Event("many.made", {}))
    first = await client.get("/api/streams", params={"pattern": "many.*"})
    assert [item["name"] for item in first.json()] == names[:100]
    assert first.links["next"]["url"] == "/api/streams?pattern=many.%2A&after=many.099"
    seen: list[str] = []
    url: str | None = "/api/streams?pattern=many.*&limit=70"
    pages = 0
    while url is not None:
        page = await client.get(url)
        assert page.status_code == 200, page.text
        seen += [item["name"] for item in page.json()]
        url = page.links.get("next", {}).get("url")
        pages += 1
    assert seen == names and pages == 4  # 70 + 70 + 70 + 40, no duplicates, no gaps
    whole = await client.get("/api/streams", params={"limit": 1000})
    assert len(whole.json()) == 252  # and order.1, user.1 and "link" not in whole.headers
    after = await client.get("/api/streams", params={"after": "many.248", "pattern": "many.*"})
    assert [item["name"] for item in after.json()] == ["many.249"]
    assert "link" not in after.headers

    index = (await client.get("/")).text
    assert "252 streams (1 to 100 below)" in index
    assert 'href="/?after=many.099">next 100</a>' in index
    assert index.count('href="/streams/') == 100
    last = (await client.get("/", params={"after": "many.196"})).text
    assert "252 streams (198 to 252 below)" in last and "next 100" not in last
    assert 'href="/">first page</a>' in last
    single = (await client.get("/", params={"pattern": "user.*"})).text
    assert "1 stream, 2 events." in single and "first page" not in single


def test_serve_prints_an_ipv6_url_in_brackets(tmp_path: Path) -> None:
    """``--host ::1`` printed http://::1:PORT/, which no client can parse."""
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    process = start_command("serve", "--host", "::1", "--port", "0", cwd=tmp_path)
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
        url = banner.split()[3]
        assert re.fullmatch(r"http://\[::1\]:\d+/", url), banner
        assert httpx.get(url + "api/streams", timeout=10).json() == []
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0
