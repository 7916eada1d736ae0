"""``tail -f`` and ``serve`` started on a PostgreSQL database before its first writer.

A reading command refuses a database without a store (another application's, given by
mistake, must get no tables). The followers refused too, so one started before the
writer that creates the store (a deploy bringing both up at once) exited at once. They
now wait for the store, saying so once on stderr, make nothing in the database while
they wait, and follow the events once a writer has created it.
"""

from __future__ import annotations

import asyncio
import json
import queue
import re
import signal
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from pepperpy.event import EventStore
from tests.cli.conftest import start_command
from tests.cli.test_postgres_reading_creates_nothing import _made

pytestmark = pytest.mark.postgres

#: generous: a loaded two-core machine starts Python slowly
_WAIT = 60.0


def _lines(stream: object) -> queue.Queue[str]:
    """The lines of a child's pipe as they come, read by a thread."""
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        for line in stream:  # type: ignore[attr-defined]
            lines.put(line)
        lines.put("")  # the end

    threading.Thread(target=read, daemon=True).start()
    return lines


def _next(lines: queue.Queue[str]) -> str:
    return lines.get(timeout=_WAIT)


def _append(url: str, n: int) -> None:
    async def write() -> None:
        async with EventStore(url) as store:
            await store.append("order.1", {"type": "order.placed", "data": {"n": n}})

    asyncio.run(write())


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.kill()
    process.wait(timeout=_WAIT)
    for pipe in (process.stdout, process.stderr):
        if pipe is not None:
            pipe.close()


@pytest.mark.parametrize("schema", [None, "events"])
def test_tail_follow_waits_for_the_store_then_follows_it(
    tmp_path: Path, postgres_url: str, schema: str | None
) -> None:
    url = postgres_url if schema is None else f"{postgres_url}?schema={schema}"
    database = postgres_url.rsplit("/", 1)[1]
    process = start_command("--store", url, "tail", "-f", "--count", "1", cwd=tmp_path)
    try:
        err, out = _lines(process.stderr), _lines(process.stdout)
        note = _next(err)
        assert note.startswith(
            f"pepperpy-event: waiting: no event store in database {database!r}"
        ), note
        assert "followed once a writer creates the store" in note
        time.sleep(1.5)  # it looks again meanwhile, and still makes nothing
        assert process.poll() is None
        assert _made(postgres_url) == []
        _append(url, 1)
        assert re.fullmatch(r'0 order\.1:0 order\.placed \{"n":1\}\n', _next(out))
        assert process.wait(timeout=_WAIT) == 0
        assert _next(err) == ""  # nothing more on stderr: the note came once
    finally:
        _stop(process)


def test_ctrl_c_stops_the_waiting_tail_quietly(tmp_path: Path, postgres_url: str) -> None:
    process = start_command("--store", postgres_url, "tail", "-f", cwd=tmp_path)
    try:
        err = _lines(process.stderr)
        assert _next(err).startswith("pepperpy-event: waiting: ")
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=_WAIT) == 0
        assert _next(err) == ""
        assert _made(postgres_url) == []
    finally:
        _stop(process)


def test_serve_waits_for_the_store_then_serves_it(tmp_path: Path, postgres_url: str) -> None:
    pytest.importorskip("uvicorn")
    process = start_command("--store", postgres_url, "serve", "--port", "0", cwd=tmp_path)
    try:
        err, out = _lines(process.stderr), _lines(process.stdout)
        assert _next(err).startswith("pepperpy-event: waiting: no event store in database ")
        assert _made(postgres_url) == []
        _append(postgres_url, 1)
        banner = _next(out)
        assert banner.startswith("pepperpy-event console on http://127.0.0.1:"), banner
        url = banner.split()[3]
        with urllib.request.urlopen(f"{url}api/streams", timeout=_WAIT) as answer:
            assert json.loads(answer.read()) == [{"name": "order.1", "events": 1}]
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=_WAIT) == 0
    finally:
        _stop(process)


def test_other_refusals_are_not_waited_on(tmp_path: Path, postgres_url: str) -> None:
    """A database that does not exist is no store yet to come: refused at once."""
    missing = postgres_url.rsplit("/", 1)[0] + "/no_such_database_pepperpy"
    process = start_command("--store", missing, "tail", "-f", cwd=tmp_path)
    try:
        assert process.wait(timeout=_WAIT) == 1
        assert process.stderr is not None
        [line] = process.stderr.read().splitlines()
        assert line.startswith("pepperpy-event: error: "), line
    finally:
        _stop(process)
