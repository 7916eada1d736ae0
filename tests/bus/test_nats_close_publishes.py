"""NATS: close() takes the publishes of the handlers it waits for, then refuses.

close() set its client aside before its consumers finished their handlers, so a handler
publishing its follow-up event (and the dead letter of one that failed) met
"ClosedError: the NATS transport is closed or not started" (audit 13, finding 1), and a
publish under way when close() began lost its connection under it (``stored`` None).
Now publishes go through until the handlers finished; after that they are refused with
``stored`` False, and those under way get their answer before the client closes. A
cancelled close() refuses them at once. Each test has a stream and subject prefix of its
own (``names``), deleted afterwards.
"""

from __future__ import annotations

import asyncio

import pytest

from pepperpy.event import ClosedError, Event
from pepperpy.event.transports import Subscription
from pepperpy.event.transports.nats import NatsTransport
from tests.bus.closing import publish_while_close_waits
from tests.bus.faultproxy import finishes
from tests.bus.test_nats_publish import stored

pytestmark = pytest.mark.nats


async def test_a_handler_publishes_while_close_waits_for_it(
    nats_url: str, names: dict[str, str]
) -> None:
    transport = NatsTransport(nats_url, retention="limits", **names)
    try:
        await publish_while_close_waits(transport)
    finally:
        await finishes(transport.close(), 15)
    assert await stored(nats_url, names["stream"]) == 2


async def test_close_lets_a_publish_under_way_finish_and_refuses_new_ones(
    nats_url: str, names: dict[str, str]
) -> None:
    transport = NatsTransport(nats_url, retention="limits", **names)
    await transport.start()
    under_way = [
        asyncio.create_task(transport.publish(Event("closing.y", {"n": n}))) for n in range(50)
    ]
    await asyncio.sleep(0)  # their requests are out
    closing = asyncio.create_task(transport.close())
    await asyncio.sleep(0)  # close() began: no handler to wait for
    with pytest.raises(ClosedError) as raised:
        await transport.publish(Event("closing.y", {"n": -1}))
    assert raised.value.stored is False
    async with asyncio.timeout(20):
        await closing
    assert [t.exception() for t in under_way] == [None] * 50
    assert await stored(nats_url, names["stream"]) == 50


async def test_a_cancelled_close_refuses_publishes_at_once_and_disconnects(
    nats_url: str, names: dict[str, str]
) -> None:
    transport = NatsTransport(nats_url, **names)
    started, go_on = asyncio.Event(), asyncio.Event()

    async def hold(event: Event) -> None:
        started.set()
        await go_on.wait()

    await transport.start()
    nc = transport._nc
    assert nc is not None
    try:
        await transport.subscribe(Subscription("orders.*", hold, "holders", "hold"))
        await transport.publish(Event("orders.placed", {"order": 1}))
        async with asyncio.timeout(30):
            await started.wait()
            closing = asyncio.create_task(transport.close())
            await asyncio.sleep(0.2)  # close() waits for hold
            closing.cancel()
            with pytest.raises(asyncio.CancelledError):
                await closing
            with pytest.raises(ClosedError) as raised:
                await transport.publish(Event("payments.requested", {"order": 1}))
            assert raised.value.stored is False
            assert nc.is_closed
    finally:
        go_on.set()
        await finishes(transport.close(), 15)
