"""memory://: unsubscribe() and close() called from a handler that a delivery waits for.

On ``memory://`` a ``publish`` returns after its subscribers ran, so a handler that
publishes waits for the handlers of what it published. One of those calling
``unsubscribe()`` on the publishing handler, or ``close()`` on its bus, must not wait
for the publishing handler to finish: that handler waits for it (a deadlock).
"""

from __future__ import annotations

import asyncio

from pepperpy.event import ClosedError, Event, EventBus, RetryPolicy


async def test_a_handler_unsubscribing_the_handler_whose_publish_it_runs_in_does_not_deadlock() -> (
    None
):
    bus = EventBus(retry_policy=RetryPolicy.NONE)
    placed: list[int] = []
    removed: list[bool] = []

    async def forward(event: Event) -> None:  # a one-shot: the next handler removes it
        placed.append(event.data)
        await bus.publish("orders.done", event.data)

    async def one_shot_over(event: Event) -> None:
        removed.append(await bus.unsubscribe("orders.placed", forward))

    bus.subscribe("orders.placed", forward)
    bus.subscribe("orders.done", one_shot_over)
    async with asyncio.timeout(10):  # a deadlock guard, not a timing assertion
        async with bus:
            await bus.publish("orders.placed", 1)
            assert removed == [True]
            await bus.publish("orders.placed", 2)  # forward is gone
    assert placed == [1]
    assert bus.health().in_progress == 0


async def test_a_handler_of_another_bus_closing_the_bus_whose_handler_waits_for_it() -> None:
    outer = EventBus(retry_policy=RetryPolicy.NONE)
    inner = EventBus(retry_policy=RetryPolicy.NONE)
    finished: list[str] = []

    @outer.subscribe("jobs.run")
    async def run(event: Event) -> None:
        await inner.publish("jobs.stop", event.data)
        finished.append("run")

    @inner.subscribe("jobs.stop")
    async def stop(event: Event) -> None:
        await outer.close()  # starts outer's shutdown, cannot wait for run
        finished.append("stop")

    async with asyncio.timeout(10):  # a deadlock guard, not a timing assertion
        await outer.publish("jobs.run", 1)
        await outer.close()  # waits for the shutdown stop() started
        await inner.close()
    assert finished == ["stop", "run"]
    assert outer.health().state == "closed"
    try:
        await outer.publish("jobs.run", 2)
    except ClosedError:
        pass
    else:
        raise AssertionError("a closed bus took a publish")
