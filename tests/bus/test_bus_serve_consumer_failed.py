"""serve()'s closing line when the transport's outage is a consumer of its own failing.

Redis reports ``outage_reason`` "consumer failed" when the broker answers but one of the
transport's loops (the shared reader, a heartbeat, a worker, a catch-up) keeps failing.
The progress line serve() logs while the bus closes said "the broker has refused the
connection for N s (consumer failed)": the broker had refused nothing.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from pepperpy.event import EventBus, _bus_serve
from tests.bus.test_serve import _until
from tests.bus.test_serve_shutdown import _messages, _SlowToClose
from tests.script_process import DEADLINE


class _ConsumerFailedWhileClosing(_SlowToClose):
    """A transport whose own consumer has been failing for 7 s, its broker answering."""

    def outage_reason(self) -> tuple[str, str] | None:
        return "consumer failed", "the shared reader failed: RuntimeError('boom')"


async def test_closing_line_says_a_consumer_fails_not_that_the_broker_refused(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_bus_serve, "PROGRESS_EVERY", 0.01)
    caplog.set_level(logging.INFO, "pepperpy.event.bus")
    transport = _ConsumerFailedWhileClosing()
    bus = EventBus(transport=transport)
    serving = asyncio.create_task(bus.serve(signals=()))
    await _until(lambda: bus._serving and bus._started)
    closing = asyncio.create_task(bus.close())
    await _until(lambda: any("still closing" in m for m in _messages(caplog)))
    transport.release.set()
    await asyncio.wait_for(serving, DEADLINE)
    await closing
    [still, *_] = [line for line in _messages(caplog) if "still closing" in line]
    assert "refused" not in still, still
    assert still.endswith(
        "; the broker answers, but a consumer of the transport has been failing for 7 s "
        "(consumer failed: the shared reader failed: RuntimeError('boom'))"
    ), still
