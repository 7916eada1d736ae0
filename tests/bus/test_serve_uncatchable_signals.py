"""serve(signals=...) refuses SIGKILL and SIGSTOP at once.

No process can catch them: asyncio refused to handle one only once serve() ran, and
serve() then handled none of the signals given with it (a SIGTERM ended the process
without the graceful close), saying so only in its INFO line.
"""

from __future__ import annotations

import asyncio
import signal

import pytest

from pepperpy.event import EventBus


@pytest.mark.parametrize("name", ["SIGKILL", "SIGSTOP"])
async def test_a_signal_no_process_can_catch_is_refused_before_serving(name: str) -> None:
    if not hasattr(signal, name):
        pytest.skip(f"no {name} on this platform")
    bus = EventBus()
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(ValueError, match=f"{name} in signals cannot be caught"):
        async with asyncio.timeout(10):  # it used to serve, handling no signal at all
            await bus.serve(signals=(signal.SIGTERM, getattr(signal, name)))
    assert signal.getsignal(signal.SIGTERM) == before
    assert bus.health().state == "new"  # refused before starting anything
    await bus.close()
