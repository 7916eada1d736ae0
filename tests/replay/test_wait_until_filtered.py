"""Projection.wait_until on a projection with ``streams=``/``types=`` (audit 18, finding 2).

Such a projection only moves with the events it reads, so when the append's last event
is one it does not read, its position never reached the append's ``global_position``
and the documented read-your-writes pattern waited until the next event it reads was
appended, possibly for ever. It now returns once every event it reads up to there is
committed.
"""

from __future__ import annotations

import asyncio

from pepperpy.event import Event, EventStore, Projection


def orders(store: EventStore) -> Projection:
    projection = Projection("orders", store, initial=dict, types="order.*")

    @projection.on("order.placed")
    def placed(state: dict[str, int], event: Event) -> None:
        state[event.stream] = event.data["amount"]

    return projection


async def test_it_returns_when_the_append_ends_with_an_event_it_does_not_read(
    any_store_url: str,
) -> None:
    async with EventStore(any_store_url) as store:
        projection = orders(store)
        following = asyncio.ensure_future(projection.follow())
        try:
            result = await store.append(
                "order.1",
                [Event("order.placed", {"amount": 30}), Event("audit.recorded", {"by": "ann"})],
            )
            async with asyncio.timeout(15):
                at = await projection.wait_until(result.global_position)
            assert at == result.global_position == 1
            assert projection.state == {"order.1": 30}  # the order is applied
            assert projection.position == 0  # its own position: the last event it read
        finally:
            following.cancel()
            await asyncio.gather(following, return_exceptions=True)
            await projection.close()


async def test_it_still_waits_for_an_event_it_reads_before_the_position(
    any_store_url: str,
) -> None:
    async with EventStore(any_store_url) as store:
        projection = orders(store)
        try:
            await store.append("audit.0", Event("audit.recorded", {"by": "bob"}))
            await projection.run()  # nothing it reads yet: no position
            result = await store.append(
                "order.1",
                [Event("order.placed", {"amount": 30}), Event("audit.recorded", {"by": "ann"})],
            )
            waiting = asyncio.ensure_future(projection.wait_until(result.global_position))
            await asyncio.sleep(0.1)
            assert not waiting.done()  # the order at 1 is not applied yet
            await projection.run()
            async with asyncio.timeout(15):
                assert await waiting == 2
            assert projection.state == {"order.1": 30}
        finally:
            await projection.close()


async def test_it_waits_for_a_position_the_log_has_not_reached(any_store_url: str) -> None:
    async with EventStore(any_store_url) as store:
        projection = orders(store)
        try:
            await store.append("order.1", Event("order.placed", {"amount": 1}))
            await projection.run()
            waiting = asyncio.ensure_future(projection.wait_until(3))
            await asyncio.sleep(0.1)
            assert not waiting.done()  # nothing is at 3 yet
            await store.append("audit.1", [Event("audit.recorded", {}) for _ in range(3)])
            async with asyncio.timeout(15):
                assert await waiting == 3
        finally:
            await projection.close()
