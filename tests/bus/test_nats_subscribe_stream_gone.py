"""NATS: a subscription made after the stream was deleted under a running bus.

Nothing had made the stream again (no publish since, no subscription to notice), so the
new consumer had no stream to go on, and ``subscribe()`` raised ``TransportError:
cannot subscribe ...: nats: NotFoundError: code=404 err_code=10059 description='stream
not found'`` until some publish made the stream again. It now makes the stream again
(checked as at start) and subscribes; what is published then is delivered.

On the real server, in a stream of the test's own, deleted afterwards.
"""

from __future__ import annotations

from typing import Any

import pytest

from pepperpy.event import Event
from pepperpy.event.transports.base import Subscription
from pepperpy.event.transports.nats import NatsTransport
from tests.bus.faultproxy import finishes
from tests.helpers import eventually

pytestmark = pytest.mark.nats


@pytest.mark.parametrize("group", [None, "billing"])
async def test_a_subscription_after_the_stream_was_deleted_makes_it_again(
    nats_url: str, nats_namespace: dict[str, str], nats_jetstream: Any, group: str | None
) -> None:
    """The subscription made before, whose consumer went with the stream, is back too
    when ``subscribe()`` returns: with interest retention (the default) an event stored
    while its consumer is missing would be dropped for it."""
    got: list[object] = []
    earlier: list[object] = []

    async def handle(event: Event) -> None:
        got.append(event.data)

    async def audit(event: Event) -> None:
        earlier.append(event.data)

    transport = NatsTransport(nats_url, partitions=1, **nats_namespace)
    publisher = NatsTransport(nats_url, partitions=1, **nats_namespace)
    await transport.start()
    await publisher.start()
    try:
        await transport.subscribe(Subscription("orders.*", audit, None, "s0"))
        await nats_jetstream.delete_stream(nats_namespace["stream"])
        await finishes(transport.subscribe(Subscription("orders.*", handle, group, "s1")), 15)
        info = await nats_jetstream.stream_info(nats_namespace["stream"])
        assert info.config.subjects == [f"{nats_namespace['prefix']}.>"]
        await publisher.publish(Event("orders.placed", data=1))
        await eventually(lambda: got == [1] and earlier == [1])
    finally:
        await publisher.close()
        await transport.close()
