"""The live tail page (/tail) keeps trying when the console refuses its stream.

A browser's ``EventSource`` reconnects by itself only when a stream ends or the network
fails; a 503 (the store cannot answer: at the first request, or when it reconnects after
a subscription gave up on a long outage) closes it for good. The page said
"reconnecting..." and never did: every open tail was dead until reloaded. The page's
own script now opens a new ``EventSource`` after such a refusal, from the event after
the last one it showed.

The script runs in Node's ``EventSource`` (``--experimental-eventsource``, Node 20+),
the page's two elements stood in for by objects that print what the page would show.
Skipped without Node.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import AsyncIterator

import httpx
import pytest
import uvicorn

from pepperpy.event import Event, EventStore
from pepperpy.event.cli._console import console_app
from tests.faultproxy import FaultProxy

pytestmark = pytest.mark.postgres

#: runs the page's script: the page on stdin, the console's URL as argument
_PAGE_RUNNER = r"""
const page = require("fs").readFileSync(0, "utf8");
const script = page.split("<script>")[1].split("</script>")[0];
const base = process.argv[1];
const Native = EventSource;
globalThis.EventSource = class extends Native {
  constructor(url) { super(new URL(url, base).toString()); }
};
globalThis.window = { location: { search: "" } };
const elements = {
  state: { set textContent(value) { console.log("state " + value); } },
  log: {
    childElementCount: 0,
    prepend(line) { console.log("line " + line.textContent); },
    lastChild: { remove() {} },
  },
};
globalThis.document = {
  getElementById: (id) => elements[id],
  createElement: () => ({ textContent: "" }),
};
new Function(script)();
"""


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.skip("no Node.js")
    probe = subprocess.run(
        [node, "--experimental-eventsource", "-e", "EventSource"],
        capture_output=True,
        timeout=30,
        check=False,
    )
    if probe.returncode != 0:
        pytest.skip("this Node.js has no EventSource (Node 20+)")
    return node


@pytest.fixture
async def console(postgres_url: str) -> AsyncIterator[tuple[str, FaultProxy, EventStore]]:
    """The console over a store reached through a fault proxy, and a writer beside it."""
    async with FaultProxy(5432) as proxy, EventStore(postgres_url) as writer:
        await writer.append("orders.1", Event("order.placed", {"n": 1}))
        through = postgres_url.replace(":5432/", f":{proxy.port}/")
        async with EventStore(through) as store:
            config = uvicorn.Config(
                console_app(store), host="127.0.0.1", port=0, log_level="critical", lifespan="off"
            )
            config.timeout_graceful_shutdown = 1
            server = uvicorn.Server(config)
            serving = asyncio.create_task(server.serve())
            while not server.started:
                assert not serving.done(), "the server did not start"
                await asyncio.sleep(0.01)
            port = server.servers[0].sockets[0].getsockname()[1]
            try:
                yield f"http://127.0.0.1:{port}", proxy, writer
            finally:
                server.should_exit = True
                await store.close()  # ends open tails so the server can stop
                await serving


async def _until(lines: AsyncIterator[str], wanted: str, seconds: float) -> list[str]:
    seen: list[str] = []
    async with asyncio.timeout(seconds):
        async for line in lines:
            seen.append(line)
            if wanted in line:
                return seen
    raise AssertionError(f"the page ended before showing {wanted!r}: {seen}")


async def test_the_page_tries_again_after_a_refusal(
    console: tuple[str, FaultProxy, EventStore],
) -> None:
    node = _node()
    base, proxy, writer = console
    async with httpx.AsyncClient(base_url=base) as http:
        page = (await http.get("/tail")).text
        proxy.refuse()
        proxy.drop()  # the console's connections go: its store cannot answer
        refused = await http.get("/api/tail")
        assert refused.status_code == 503, refused.text
    runner = await asyncio.create_subprocess_exec(
        node,
        "--experimental-eventsource",
        "-e",
        _PAGE_RUNNER,
        base,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert runner.stdin is not None and runner.stdout is not None
    runner.stdin.write(page.encode())
    runner.stdin.close()

    async def lines() -> AsyncIterator[str]:
        assert runner.stdout is not None
        async for raw in runner.stdout:
            yield raw.decode().rstrip("\n")

    output = lines()
    try:
        # the 503: the browser's EventSource gives up ("reconnecting...", it said)
        refusal = await _until(output, "state ", 20)
        assert refusal[-1] == "state unavailable, trying again...", refusal
        proxy.heal()
        await writer.append("orders.2", Event("order.placed", {"n": 2}))
        shown = await _until(output, "orders.2:0 order.placed", 20)
        assert any(line == "state live" for line in shown)
    finally:
        runner.kill()
        await runner.wait()
