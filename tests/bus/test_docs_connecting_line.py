"""docs/bus.md quotes the WARNING a bus logs while its broker does not answer; the quote is
the line logged (it left out the transport's namespace, which the line names)."""

from __future__ import annotations

import asyncio
import logging
import re
import socket
from pathlib import Path

import pytest

from pepperpy.event import EventBus

DOC = Path(__file__).resolve().parents[2] / "docs" / "bus.md"


def quoted_line() -> str:
    text = DOC.read_text().replace("\n  ", " ")
    [line] = re.findall(r"`(EventBus: still connecting to RedisTransport[^`]*)`", text)
    return line


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # nothing listens there any more: connections are refused


async def test_the_still_connecting_line_bus_md_quotes_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pytest.importorskip("redis")
    caplog.set_level(logging.WARNING, "pepperpy.event.bus")
    port = closed_port()
    quoted = quoted_line().replace("10.0.0.5:6379", f"127.0.0.1:{port}")
    # the seconds waited are measured: a busy machine may log a little more than 1.5
    pattern = re.escape(quoted).replace(re.escape("after 1.5 s"), r"after \d+\.\d s")
    bus = EventBus(transport=f"redis://127.0.0.1:{port}/0")  # connect_timeout: 10 s
    starting = asyncio.create_task(bus.start())
    async with asyncio.timeout(9):
        while not caplog.records:
            await asyncio.sleep(0.05)
    starting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await starting
    await bus.close()
    [warning] = [record.getMessage() for record in caplog.records]
    assert re.fullmatch(pattern, warning), (quoted, warning)
