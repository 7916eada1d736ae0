"""A handler publishing its follow-up event while its transport's close() waits for it:
the scenario the Redis and NATS close tests share (audit 13, finding 1)."""

from __future__ import annotations

import asyncio

import pytest

from pepperpy.event import ClosedError, Event
from pepperpy.event.transports import Subscription, Transport


async def publish_while_close_waits(transport: Transport) -> None:
    """Start ``transport``, subscribe a handler of group ``billing`` to ``orders.*`` that
    publishes ``payments.requested`` once ``close()`` began waiting for it, and check
    that publish went through while a publish after ``close()`` is refused with
    ``stored`` False. Two events are then in the transport; it is left closed."""
    started, go_on = asyncio.Event(), asyncio.Event()
    published: list[str] = []

    async def bill(event: Event) -> None:
        started.set()
        await go_on.wait()  # close() begins meanwhile
        await transport.publish(Event("payments.requested", event.data))
        published.append(event.type)

    await transport.start()
    try:
        await transport.subscribe(Subscription("orders.*", bill, "billing", "bill"))
        await transport.publish(Event("orders.placed", {"order": 1}))
        async with asyncio.timeout(30):
            await started.wait()
            closing = asyncio.create_task(transport.close())
            await asyncio.sleep(0.2)  # close() waits for bill
            assert not closing.done()
            go_on.set()
            await closing
    finally:
        go_on.set()
    assert published == ["orders.placed"]
    with pytest.raises(ClosedError) as raised:
        await transport.publish(Event("payments.requested", {"order": 2}))
    assert raised.value.stored is False
