"""Redis: close() during an outage ends the pause before a publish's next attempt at once.

A publish that finds Redis unreachable tries again after a pause that doubles up to
``max_backoff``. close() stops the attempts, but the publish only saw that once its
pause was over, and close() waits for the publishes under way: it took what the pause
had left (up to ``connect_timeout``, 10 s by default), though no attempt was going to be
made (as did a trim or a subscribe, raising ClosedError that late). Through the fault
proxy refusing every connection: after its eighth failed attempt (each logged), a
publish pauses 3.2 to 6.4 s.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import pytest

from pepperpy.event import Event, TransportError
from pepperpy.event.transports.redis import RedisTransport
from tests.bus.faultproxy import FaultProxy, finishes
from tests.helpers import eventually

pytestmark = pytest.mark.redis


async def test_close_ends_a_publish_s_pause_at_once(
    proxy: FaultProxy,
    through_proxy: Callable[..., RedisTransport],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="pepperpy.event.transports.redis")
    transport = through_proxy(partitions=1, max_backoff=300, connect_timeout=120)
    await transport.start()
    proxy.refuse()
    proxy.drop()
    publish = asyncio.ensure_future(transport.publish(Event("close.pause", {"n": 1})))

    def failures() -> int:  # each logged before its pause, in the same step
        return sum("publishing 'close.pause'" in r.getMessage() for r in caplog.records)

    # the seven pauses before the eighth failure last 6.35 s at most
    await eventually(lambda: failures() >= 8 or publish.done(), timeout=20)
    assert not publish.done()
    await finishes(transport.close(), 1.5)
    with pytest.raises(TransportError, match="closed while publishing 'close.pause'"):
        await finishes(publish, 1)
