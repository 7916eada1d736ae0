"""NATS: a failed publish says whether its event may be stored (``TransportError.stored``).

On the real server through the fault proxy, each test on a stream of its own (the
``names`` fixture of tests/bus/conftest.py, deleted afterwards) with limits retention,
so that what JetStream stored can be counted.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from pepperpy.event import EventBus, TransportError
from pepperpy.event.transports.nats import NatsTransport
from tests.bus.faultproxy import FaultProxy, finishes
from tests.bus.test_nats_publish import stored
from tests.faultproxy import Link
from tests.helpers import eventually, settle

pytestmark = pytest.mark.nats


async def test_a_publish_that_never_found_a_connection_was_not_stored(
    nats_url: str,
    names: dict[str, str],
    proxy: FaultProxy,
    nats_through_proxy: Callable[..., NatsTransport],
) -> None:
    """NATS refused every connection while the publish lasted: ``stored`` is False, and
    the event does not turn up in the stream once NATS is back (nats-py would have sent
    a request buffered while reconnecting as soon as it reconnected)."""
    transport = nats_through_proxy(publish_timeout=1.5, retention="limits")
    bus = EventBus(transport=transport)
    async with bus:
        await bus.publish("outcome.before", {"n": 0})
        proxy.refuse()
        proxy.drop()
        # once the client knows (a publish written to the reset socket before that is
        # one the transport cannot vouch for)
        await eventually(lambda: transport._nc is not None and not transport._nc.is_connected)
        with pytest.raises(TransportError) as raised:
            await finishes(bus.publish("outcome.lost", {"n": 1}), 30)
        assert raised.value.stored is False
        assert "it was not stored" in str(raised.value)
        assert "unknown" not in str(raised.value)
        proxy.heal()
        await finishes(bus.publish("outcome.after", {"n": 2}), 30)  # reconnected
        await settle(0.5)
    assert await stored(nats_url, names["stream"]) == 2  # before and after, not the lost one


async def test_a_publish_whose_puback_was_lost_may_be_stored(
    nats_url: str,
    names: dict[str, str],
    proxy: FaultProxy,
    nats_through_proxy: Callable[..., NatsTransport],
) -> None:
    """The request reached JetStream, its answer did not come back: ``stored`` is None
    and the message says so, with why publishing again is no remedy. (JetStream did
    store it, once: the retries within the call carry the same message id.)"""

    def lose_pubacks(link: Link, data: bytes) -> str | None:
        return "drop" if b'"seq"' in data else None

    bus = EventBus(transport=nats_through_proxy(publish_timeout=1.5, retention="limits"))
    async with bus:
        proxy.on_server = lose_pubacks
        with pytest.raises(TransportError) as raised:
            await finishes(bus.publish("outcome.lost", {"n": 1}), 30)
        proxy.on_server = None
    assert raised.value.stored is None
    assert "whether it was stored is unknown" in str(raised.value)
    assert "publishing it again may deliver it twice" in str(raised.value)
    assert await stored(nats_url, names["stream"]) == 1


async def test_too_large_an_event_was_not_stored(names: dict[str, str], nats_url: str) -> None:
    """Refused before sending: ``stored`` is False."""
    transport = NatsTransport(nats_url, **names)
    async with EventBus(transport=transport) as bus:
        assert transport._nc is not None
        blob = "x" * (2 * transport._nc.max_payload)
        with pytest.raises(TransportError, match="max_payload") as raised:
            await bus.publish("outcome.big", {"blob": blob})
    assert raised.value.stored is False
