"""``EventBus.close()`` while the bus's ``retry_policy`` waits between two tries.

``close()`` waited the backoff out: with a 3600 s wait and a handler that failed, it
hung for the hour. It now ends such a wait at once (a handler call under way still
finishes), and the event is not tried again. On a broker, a group's event is left
unacknowledged (not dead-lettered, never acknowledged as done): another member, or
the group after a restart, gets it. Where nothing can deliver it again (``memory://``),
it is dead-lettered with its last failure, saying the close ended its retries.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from pepperpy.event import DeadLetter, Event, EventBus, RetryPolicy
from pepperpy.event.transports.nats import NatsTransport
from pepperpy.event.transports.rabbitmq import RabbitMQTransport
from tests.conftest import unique_name
from tests.helpers import delete_redis_keys

#: far longer than any test may run: a close that waited for it would time out
_PAUSE = 3600.0
#: a close that does not wait for the pause returns well within this
_CLOSE = 10.0
_WAIT = 30.0
_CUT = "not tried again: the EventBus closed during the wait before attempt 2 of 5"


def _policy() -> RetryPolicy:
    return RetryPolicy.fixed(max_attempts=5, base_delay=_PAUSE)


async def test_memory_close_ends_the_wait_and_dead_letters_the_event() -> None:
    tried: list[int] = []
    first_try = asyncio.Event()
    seen: list[DeadLetter] = []
    republished: list[Event] = []
    bus = EventBus(retry_policy=_policy())

    @bus.subscribe("order.*")
    async def charge(event: Event) -> None:
        tried.append(event.data["n"])
        first_try.set()
        raise ConnectionError("payment gateway down")

    @bus.subscribe("deadletter.order.*")
    async def parked(event: Event) -> None:
        republished.append(event)

    bus.on_error(seen.append)
    await bus.start()
    publishing = asyncio.ensure_future(bus.publish("order.placed", {"n": 1}))
    await asyncio.wait_for(first_try.wait(), _WAIT)

    await asyncio.wait_for(bus.close(), _CLOSE)  # waited the hour out before

    await asyncio.wait_for(publishing, _CLOSE)
    assert tried == [1]  # no last try squeezed in at close
    assert [letter.attempts for letter in bus.dead_letters] == [1]
    assert seen == list(bus.dead_letters)
    error = seen[0].exception
    assert isinstance(error, ConnectionError)
    assert error.__notes__ == [_CUT]
    assert [e.metadata["dlreason"] for e in republished] == [
        f"ConnectionError: payment gateway down ({_CUT})"
    ]


async def test_memory_close_lets_a_running_handler_finish_while_cutting_a_wait() -> None:
    first_try, running, release = asyncio.Event(), asyncio.Event(), asyncio.Event()
    finished: list[int] = []
    bus = EventBus(retry_policy=_policy())

    @bus.subscribe("order.*", group="billing")
    async def charge(event: Event) -> None:
        first_try.set()
        raise ConnectionError("payment gateway down")

    @bus.subscribe("order.*")
    async def slow(event: Event) -> None:
        running.set()
        await release.wait()
        finished.append(event.data["n"])

    await bus.start()
    publishing = asyncio.ensure_future(bus.publish("order.placed", {"n": 2}))
    await asyncio.wait_for(asyncio.gather(first_try.wait(), running.wait()), _WAIT)

    closing = asyncio.ensure_future(bus.close())
    # the wait is over at once: the group's event is dead-lettered while `slow` runs
    for _ in range(200):
        if bus.dead_letters:
            break
        await asyncio.sleep(0.01)
    assert not closing.done()  # the running handler holds the close, as documented
    assert [letter.attempts for letter in bus.dead_letters] == [1]
    release.set()
    await asyncio.wait_for(closing, _CLOSE)
    await asyncio.wait_for(publishing, _CLOSE)
    assert finished == [2]


@pytest.fixture
async def redis_bus_url(redis_url: str) -> AsyncIterator[str]:
    namespace = unique_name("closeretry")
    yield f"{redis_url}?namespace={namespace}"
    await delete_redis_keys(redis_url, f"{namespace}:*")


@pytest.mark.redis
async def test_redis_close_leaves_a_group_event_for_the_next_member(redis_bus_url: str) -> None:
    await _group_event_goes_to_the_next_member(lambda: EventBus(transport=redis_bus_url))


@pytest.mark.redis
async def test_redis_close_dead_letters_an_ungrouped_event(redis_bus_url: str) -> None:
    """An ungrouped subscription's reader goes with the close: nothing delivers the
    event again, so it is dead-lettered rather than lost."""
    first_try = asyncio.Event()
    bus = EventBus(transport=redis_bus_url, retry_policy=_policy())

    @bus.subscribe("order.*")
    async def charge(event: Event) -> None:
        first_try.set()
        raise ConnectionError("payment gateway down")

    try:
        await bus.start()
        await bus.publish("order.placed", {"n": 3})
        await asyncio.wait_for(first_try.wait(), _WAIT)
        await asyncio.wait_for(bus.close(), _CLOSE)  # waited the hour out before
    finally:
        await asyncio.wait_for(bus.close(), _CLOSE)
    assert [letter.attempts for letter in bus.dead_letters] == [1]
    assert bus.dead_letters[0].exception.__notes__ == [_CUT]


@pytest.mark.rabbitmq
async def test_rabbitmq_close_leaves_a_group_event_for_the_next_member(amqp_url: str) -> None:
    exchange = unique_name("closeretry")
    # delete_topology() deletes what its own transport declared: keep every one
    transports: list[RabbitMQTransport] = []

    def make() -> EventBus:
        transports.append(RabbitMQTransport(amqp_url, exchange=exchange))
        return EventBus(transport=transports[-1])

    try:
        await _group_event_goes_to_the_next_member(make)
    finally:
        for transport in transports:
            await transport.delete_topology()


@pytest.mark.nats
async def test_nats_close_leaves_a_group_event_for_the_next_member(nats_url: str) -> None:
    name = unique_name("closeretry")
    try:
        await _group_event_goes_to_the_next_member(
            lambda: EventBus(transport=NatsTransport(nats_url, stream=name.upper(), prefix=name))
        )
    finally:
        await NatsTransport(nats_url, stream=name.upper()).delete_stream()


async def _group_event_goes_to_the_next_member(make: Callable[[], EventBus]) -> None:
    tried: list[int] = []
    got: list[int] = []
    first_try, arrived = asyncio.Event(), asyncio.Event()
    first = make()
    first.retry_policy = _policy()

    @first.subscribe("order.*", group="billing")
    async def charge(event: Event) -> None:
        tried.append(event.data["n"])
        first_try.set()
        raise ConnectionError("payment gateway down")

    try:
        async with make() as publisher:
            await first.start()
            await publisher.publish("order.placed", {"n": 7})
            await asyncio.wait_for(first_try.wait(), _WAIT)

            await asyncio.wait_for(first.close(), _CLOSE)  # waited the hour out before

            assert list(first.dead_letters) == []  # not dead-lettered for the shutdown
            second = make()

            @second.subscribe("order.*", group="billing")
            async def charge_again(event: Event) -> None:
                got.append(event.data["n"])
                arrived.set()

            async with second:  # left unacknowledged: the group's next member gets it
                await asyncio.wait_for(arrived.wait(), _WAIT)
    finally:
        await asyncio.wait_for(first.close(), _CLOSE)
    assert got == [7]
    assert tried == [7]
