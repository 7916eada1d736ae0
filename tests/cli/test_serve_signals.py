"""Ctrl-C or SIGTERM on ``serve`` with requests in flight and live tails open.

The stop cancelled the work while uvicorn was still shutting down: the store closed
under a request in flight ("400 the event store is closed"), open live tails ended in
tracebacks (uvicorn's own SIGINT handler raced ours), and SIGTERM with a tail open
waited out uvicorn's graceful timeout, logged an ERROR and exited -15.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import httpx
import pytest

from pepperpy.event import Event, EventStore

from .conftest import command_env

#: serve, with /api/stats made slow: it answers only after the stop has begun, so it is
#: certainly in flight when the signal comes (and it still reads the store then)
SLOW_SERVE = """
import asyncio, sys
from pepperpy.event.cli import _console, main

made, counted, stopping = _console.console_app, _console._activity, []

def console_app(store, **options):
    stopping.append(options.get("stopping"))
    return made(store, **options)

async def slow_activity(store, minutes):
    print("in flight", flush=True)
    if stopping[0] is None:  # a console that is not told about the stop
        await asyncio.sleep(1)
    else:
        await stopping[0].wait()
        await asyncio.sleep(0.2)  # work on while uvicorn shuts down
    return await counted(store, minutes)

_console.console_app, _console._activity = console_app, slow_activity
main(sys.argv[1:])
"""

TAILS = 3


async def _line(stream: asyncio.StreamReader) -> str:
    return (await asyncio.wait_for(stream.readline(), 30)).decode()


async def _tail_until_it_ends(http: httpx.AsyncClient, opened: asyncio.Event) -> list[str]:
    """Follow /api/tail from 0; set ``opened`` once event 0 came; the lines up to the end."""
    lines: list[str] = []
    async with http.stream("GET", "/api/tail", params={"from": 0}) as response:
        assert response.status_code == 200
        async for line in response.aiter_lines():  # a cut body raises RemoteProtocolError
            lines.append(line)
            if line == "id: 0":
                opened.set()
    return lines


async def _stop_while_busy(tmp_path: Path, signum: signal.Signals) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        SLOW_SERVE,
        "serve",
        "--port",
        "0",
        "--store",
        f"sqlite:///{tmp_path}/events.db",
        cwd=tmp_path,
        env=command_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    tasks: list[asyncio.Task[object]] = []
    try:
        banner = await _line(process.stdout)
        assert banner.startswith("pepperpy-event console on http://127.0.0.1:"), banner
        url = banner.split()[3]
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            opened = [asyncio.Event() for _ in range(TAILS)]
            tails = [asyncio.create_task(_tail_until_it_ends(http, o)) for o in opened]
            tasks += tails
            await asyncio.wait_for(asyncio.gather(*(o.wait() for o in opened)), 30)
            slow = asyncio.create_task(http.get("/api/stats"))
            tasks.append(slow)
            assert await _line(process.stdout) == "in flight\n"
            process.send_signal(signum)
            answer = await slow
            assert answer.status_code == 200, answer.text
            assert answer.json()["by_type"] == {"user.created": 1}
            for lines in await asyncio.gather(*tails):
                assert lines[:3] == [": pepperpy-event tail", "", "id: 0"], lines
            code = await asyncio.wait_for(process.wait(), 30)
        err = (await process.stderr.read()).decode()
        assert (code, err) == (0, "stopped\n")
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if process.returncode is None:
            process.kill()
            await process.wait()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM] * 2)
async def test_a_stop_answers_requests_in_flight_and_ends_tails(
    tmp_path: Path, signum: signal.Signals
) -> None:
    async with EventStore(f"sqlite:///{tmp_path}/events.db") as store:
        await store.append("user.1", Event("user.created", {}))
    await _stop_while_busy(tmp_path, signum)
