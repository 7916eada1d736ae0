"""A follow-up published while the bus closes, by a handler of an in-process bus that one
of the closing bus's handlers awaits.

docs/bus.md, "Starting and closing": while ``close()`` finishes the deliveries in
progress, their handlers may still publish. A handler of a ``memory://`` bus that such a
delivery publishes to runs inside it (``publish`` waits for it): its follow-up to the
closing bus belongs to that delivery and goes out, rather than failing the handler and
dead-lettering its event.
"""

from __future__ import annotations

import asyncio

from pepperpy.event import Event, EventBus, RetryPolicy
from tests.helpers import eventually


async def test_a_follow_up_from_a_local_bus_handler_inside_a_closing_bus_delivery_goes_out() -> (
    None
):
    service = EventBus(retry_policy=RetryPolicy.NONE)  # stands for a broker's bus
    local = EventBus(retry_policy=RetryPolicy.NONE)  # in-process fan-out
    release = asyncio.Event()
    running = asyncio.Event()
    receipts: list[int] = []

    @service.subscribe("orders.placed")
    async def fan_out(event: Event) -> None:
        running.set()
        await release.wait()  # close() begins meanwhile
        await local.publish("local.order", event.data)

    @local.subscribe("local.order")
    async def confirm(event: Event) -> None:
        await service.publish("orders.confirmed", event.data)

    service.subscribe("orders.confirmed", lambda event: receipts.append(event.data))

    async with asyncio.timeout(10):  # a deadlock guard, not a timing assertion
        await service.start()
        publishing = asyncio.create_task(service.publish("orders.placed", 7))
        await running.wait()
        closing = asyncio.create_task(service.close())
        await eventually(lambda: service.health().state == "closing")
        release.set()
        await publishing
        await closing
        await local.close()
    assert receipts == [7]
    assert not local.dead_letters and not service.dead_letters
