"""The console's safety headers: a Content-Security-Policy that lets only the pages' own
inline script and style run, ``X-Frame-Options`` and ``Referrer-Policy``.

The policy said only ``frame-ancestors 'none'``: any inline script ran, so an event's
text that an escaping slip let into a page would have run as the console's own script
(and read every event); the pages' URLs, which name streams, went as ``Referer`` to any
link followed from them.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from pepperpy.event import Event, EventStore
from pepperpy.event.cli._console import console_app

PAGES = ["/", "/streams/user.1", "/tail", "/streams/missing", "/?limit=x"]
ANSWERS = [*PAGES, "/api/streams", "/api/events", "/api/stats", "/nowhere"]


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with EventStore(f"sqlite:///{tmp_path}/events.db") as store:
        await store.append("user.1", [Event("<script>alert(1)</script>", {"x": "</script>"})])
        config = uvicorn.Config(
            console_app(store), host="127.0.0.1", port=0, log_level="error", lifespan="off"
        )
        config.timeout_graceful_shutdown = 1
        server = uvicorn.Server(config)
        serving = asyncio.create_task(server.serve())
        while not server.started:
            assert not serving.done(), "the server did not start"
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            yield http
        server.should_exit = True
        await store.close()
        await serving


def _policy(header: str) -> dict[str, list[str]]:
    directives = (part.split() for part in header.split(";") if part.strip())
    return {name: sources for name, *sources in directives}


def _hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


async def test_every_answer_carries_the_safety_headers(client: httpx.AsyncClient) -> None:
    for path in ANSWERS:
        answer = await client.get(path)
        policy = _policy(answer.headers["content-security-policy"])
        assert policy["default-src"] == ["'none'"], path
        assert policy["frame-ancestors"] == ["'none'"], path
        assert policy["base-uri"] == ["'none'"], path
        assert policy["connect-src"] == ["'self'"], path
        assert answer.headers["x-frame-options"] == "DENY", path
        assert answer.headers["referrer-policy"] == "no-referrer", path
        assert answer.headers["x-content-type-options"] == "nosniff", path


async def test_only_the_pages_own_script_and_style_may_run(client: httpx.AsyncClient) -> None:
    for path in PAGES:
        answer = await client.get(path)
        assert answer.headers["content-type"].startswith("text/html"), path
        policy = _policy(answer.headers["content-security-policy"])
        for directive, tag in (("script-src", "script"), ("style-src", "style")):
            allowed = policy[directive]
            assert all(source.startswith("'sha256-") for source in allowed), (path, allowed)
            for inline in re.findall(f"<{tag}>(.*?)</{tag}>", answer.text, re.DOTALL):
                assert _hash(inline) in allowed, (path, tag)
    # the event's type and data are text, not a script: no <script> but the tail's own
    page = (await client.get("/streams/user.1")).text
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
