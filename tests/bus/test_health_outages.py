"""EventBus.health() through a broker outage, on every broker, through the fault proxy.

While the proxy refuses connections and has reset the open ones, ``health().outage``
counts the seconds since the transport noticed, and ``ready`` is False; once the proxy
lets connections through again, the transport reconnects by itself, ``outage`` is None
and the bus is ready again, and it consumes what is published after.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from pepperpy.event import EventBus, Transport
from tests.bus.faultproxy import FaultProxy
from tests.helpers import eventually

BROKERS = [
    pytest.param("redis", marks=pytest.mark.redis),
    pytest.param("nats", marks=pytest.mark.nats),
    pytest.param("rabbitmq", marks=pytest.mark.rabbitmq),
]
#: reconnect quickly, so that the test does not wait for the transports' default backoff
FAST = {"redis": {"max_backoff": 0.2}, "nats": {}, "rabbitmq": {}}


@pytest.mark.parametrize("broker", BROKERS)
async def test_health_reports_a_broker_outage_while_it_lasts(
    broker: str, proxy: FaultProxy, through_proxy: Callable[..., Transport]
) -> None:
    got: list[Any] = []
    bus = EventBus(transport=through_proxy(**FAST[broker]))
    bus.subscribe("jobs.*", group="workers")(lambda event: got.append(event.data))
    async with bus:
        healthy = bus.health()
        assert healthy.ready and healthy.outage is None
        proxy.refuse()  # no new connection gets through...
        assert proxy.drop()  # ...and the open ones are reset
        await eventually(lambda: bus.health().outage is not None, timeout=20)
        down = bus.health()
        assert down.state == "running" and not down.ready
        assert down.outage is not None
        await asyncio.sleep(0.3)
        later = bus.health().outage
        assert later is not None and later >= down.outage + 0.3  # it counts on
        proxy.heal()
        await eventually(lambda: bus.health().ready, timeout=30)
        assert bus.health().outage is None
        await bus.publish("jobs.run", 1)
        await eventually(lambda: got == [1], timeout=20)
