"""EventBus.health() through a broker outage, on every broker, through the fault proxy.

While the proxy refuses connections and has reset the open ones, ``health().outage``
counts the seconds since the transport noticed, and ``ready`` is False; once the proxy
lets connections through again, the transport reconnects by itself, ``outage`` is None
and the bus is ready again, and it consumes what is published after.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pytest

from pepperpy.event import EventBus, Transport, TransportError
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


#: a publish gives up quickly: each broker's bound on a publish to an unreachable broker
PUBLISH_BOUND = {
    "redis": {"max_backoff": 0.2, "connect_timeout": 1.0},
    "nats": {"publish_timeout": 1.0},
    "rabbitmq": {"connect_timeout": 1.0},
}


@pytest.mark.parametrize("broker", BROKERS)
async def test_a_bus_that_only_publishes_reports_an_outage_until_a_publish_succeeds(
    broker: str,
    proxy: FaultProxy,
    through_proxy: Callable[..., Transport],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # an HTTP app's bus: no subscription, so no consumer loop meets the outage; its
    # publishes must report it (health(), the WARNING) and a later success its end
    caplog.set_level(logging.INFO, logger="pepperpy.event")
    bus = EventBus(transport=through_proxy(**PUBLISH_BOUND[broker]))
    async with bus:
        await bus.publish("jobs.run", 0)
        assert bus.health().ready
        proxy.refuse()
        proxy.drop()
        with pytest.raises(TransportError):
            await bus.publish("jobs.run", 1)
        down = bus.health()
        assert not down.ready and down.outage is not None
        ours = f"pepperpy.event.transports.{broker}"
        warned = [r for r in caplog.records if r.name == ours and r.levelno == logging.WARNING]
        assert warned, "the outage is logged as a WARNING"
        assert vars(warned[0])["kind"] == "outage"  # a field for JSON logs (test_log_fields)
        assert "127.0.0.1" in vars(warned[0])["transport"]
        proxy.heal()

        async def published() -> bool:
            try:
                await bus.publish("jobs.run", 2)
            except TransportError:
                return False
            return True

        for _ in range(30):
            if await published():
                break
        else:
            raise AssertionError("no publish got through after the proxy healed")
        await eventually(lambda: bus.health().ready, timeout=10)
        assert bus.health().outage is None
        [over] = [r for r in caplog.records if vars(r).get("kind") == "outage_over"]
        assert over.name == ours and over.levelno == logging.INFO
        assert vars(over)["outage_s"] >= 0
