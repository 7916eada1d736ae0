"""``stop()`` of a bus attachment while a ``RetryMiddleware`` waits between two tries.

The store attachment's ``stop()`` cuts such a wait short (test_stop_during_retry_wait);
the bus attachment's waited it out: with a 30 s backoff, ``stop()`` (a deployment's
shutdown) took 30 s. It now cancels the wait, and the event, not handled, is neither
retried nor dead-lettered: it goes back to the transport as not delivered, so a group's
broker gives it to another member (left unacknowledged, never acknowledged as done).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from pepperpy.event import (
    Event,
    EventBus,
    EventProcessor,
    RetryPolicy,
)
from tests.conftest import unique_name
from tests.helpers import delete_redis_keys
from tests.processing.retry_waits import PAUSE, failing_processor, gated_processor

#: a stop that does not wait for the pause returns well within this
_STOP = 10.0
_WAIT = 30.0


def _recording(got: list[int], arrived: asyncio.Event) -> EventProcessor:
    processor = EventProcessor()

    @processor.handle("order.*")
    async def charge(event: Event) -> None:
        got.append(event.data["n"])
        arrived.set()

    return processor


async def test_a_group_member_stopping_during_a_retry_wait_hands_the_event_on() -> None:
    tried: list[int] = []
    got: list[int] = []
    first_try, arrived = asyncio.Event(), asyncio.Event()
    failing, letters = failing_processor(tried, first_try)
    async with EventBus() as bus:
        leaving = failing.attach(bus, "order.*", group="billing")
        await bus.start()
        publishing = asyncio.ensure_future(bus.publish("order.placed", {"n": 1}))
        await asyncio.wait_for(first_try.wait(), _WAIT)
        staying = _recording(got, arrived).attach(bus, "order.*", group="billing")
        await bus.start()

        await asyncio.wait_for(leaving.stop(), _STOP)  # waited the hour out before

        await asyncio.wait_for(publishing, _WAIT)  # memory://: once a member handled it
        assert tried == [1]  # not tried again
        assert got == [1]  # the other member handled it
        assert leaving.processed == 0
        assert staying.processed == 1
        assert list(letters.dead_letters) == []
        assert list(bus.dead_letters) == []  # not a failure: not handled


async def test_an_ungrouped_attachment_stopping_during_a_retry_wait() -> None:
    tried: list[int] = []
    first_try = asyncio.Event()
    processor, letters = failing_processor(tried, first_try)
    async with EventBus() as bus:
        attachment = processor.attach(bus, "order.*")
        await bus.start()
        publishing = asyncio.ensure_future(bus.publish("order.placed", {"n": 1}))
        await asyncio.wait_for(first_try.wait(), _WAIT)

        await asyncio.wait_for(attachment.stop(), _STOP)

        await asyncio.wait_for(publishing, _WAIT)  # the publisher is not failed either
        assert tried == [1]
        assert attachment.processed == 0
        assert not attachment.running
        assert list(letters.dead_letters) == []
        assert list(bus.dead_letters) == []


async def test_a_stop_during_the_try_skips_the_wait_that_would_follow() -> None:
    gate, started = asyncio.Event(), asyncio.Event()
    tried: list[int] = []
    processor = gated_processor(tried, started, gate)

    async with EventBus() as bus:
        attachment = processor.attach(bus, "order.*")
        await bus.start()
        publishing = asyncio.ensure_future(bus.publish("order.placed", {"n": 0}))
        await asyncio.wait_for(started.wait(), _WAIT)
        stopping = asyncio.ensure_future(attachment.stop())
        await asyncio.sleep(0)  # stop() has begun: the try in hand still finishes
        assert not stopping.done()
        gate.set()
        await asyncio.wait_for(stopping, _STOP)
        await asyncio.wait_for(publishing, _WAIT)
        assert tried == [0]  # finished its try, and no other came
        assert list(bus.dead_letters) == []


async def test_a_stop_while_the_bus_closes_is_still_a_cancellation() -> None:
    """The bus's own cancellation of the delivery (serve()'s shutdown_timeout) is not
    taken back with the stop's."""
    tried: list[int] = []
    first_try = asyncio.Event()
    processor, _ = failing_processor(tried, first_try)
    bus = EventBus()
    attachment = processor.attach(bus, "order.*")
    await bus.start()
    publishing = asyncio.ensure_future(bus.publish("order.placed", {"n": 1}))
    await asyncio.wait_for(first_try.wait(), _WAIT)
    publishing.cancel()  # the publisher's task runs the delivery on memory://
    await asyncio.wait_for(attachment.stop(), _STOP)
    with pytest.raises(asyncio.CancelledError):
        await publishing
    await bus.close()
    assert tried == [1]


@pytest.fixture
async def bus_url(redis_url: str) -> AsyncIterator[str]:
    namespace = unique_name("stopretry")
    yield f"{redis_url}?namespace={namespace}"
    await delete_redis_keys(redis_url, f"{namespace}:*")


@pytest.mark.redis
async def test_redis_group_gets_the_event_again_after_the_stop(bus_url: str) -> None:
    tried: list[int] = []
    got: list[int] = []
    first_try, arrived = asyncio.Event(), asyncio.Event()
    failing, letters = failing_processor(tried, first_try)
    async with (
        EventBus(transport=bus_url) as first,
        EventBus(transport=bus_url) as second,
        EventBus(transport=bus_url) as publisher,
    ):
        leaving = failing.attach(first, "order.*", group="billing")
        await first.start()
        await publisher.publish("order.placed", {"n": 7})
        await asyncio.wait_for(first_try.wait(), _WAIT)

        await asyncio.wait_for(leaving.stop(), _STOP)  # waited the hour out before

        assert list(first.dead_letters) == []
        assert list(letters.dead_letters) == []
        # left unacknowledged: the group's next member gets it (not acknowledged as done)
        _recording(got, arrived).attach(second, "order.*", group="billing")
        await second.start()
        await asyncio.wait_for(arrived.wait(), _WAIT)
        assert got == [7]
        assert tried == [7]


async def test_stop_does_not_wait_out_the_bus_retry_policy_either() -> None:
    """Without a ``RetryMiddleware`` the bus's own ``retry_policy`` retries the
    attachment: its wait between two tries ends at ``stop()`` the same way."""
    tried: list[int] = []
    got: list[int] = []
    first_try, arrived = asyncio.Event(), asyncio.Event()
    failing = EventProcessor()

    @failing.handle("order.*")
    async def charge(event: Event) -> None:
        tried.append(event.data["n"])
        first_try.set()
        raise ConnectionError("payment gateway down")

    async with EventBus(retry_policy=RetryPolicy.fixed(max_attempts=5, base_delay=PAUSE)) as bus:
        leaving = failing.attach(bus, "order.*", group="billing")
        await bus.start()
        publishing = asyncio.ensure_future(bus.publish("order.placed", {"n": 2}))
        await asyncio.wait_for(first_try.wait(), _WAIT)
        _recording(got, arrived).attach(bus, "order.*", group="billing")
        await bus.start()

        await asyncio.wait_for(leaving.stop(), _STOP)  # waited the hour out before

        await asyncio.wait_for(publishing, _WAIT)
        assert tried == [2]
        assert got == [2]  # the group's other member handled it
        assert list(bus.dead_letters) == []
