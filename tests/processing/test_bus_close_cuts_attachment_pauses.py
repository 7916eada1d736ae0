"""``EventBus.close()`` while an attached processor's own middleware pauses.

``close()`` already ended the bus's own ``retry_policy`` wait
(tests/bus/test_bus_close_during_retry_wait.py), and the attachment's ``stop()`` the
pauses of its ``RetryMiddleware`` and ``RateLimitMiddleware``
(test_bus_stop_during_retry_wait.py); but ``close()`` itself waited such a pause out:
with a 3600 s backoff and a failing handler, it hung for the hour. It now ends them with
the outcome of the bus's own cut: a group's event on a broker is left unacknowledged
for another member; on ``memory://`` and for an ungrouped subscription it is
dead-lettered, saying the close ended its retries. A handler call under way finishes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from pepperpy.event import (
    ClosedError,
    DeadLetter,
    Event,
    EventBus,
    EventProcessor,
    RateLimitMiddleware,
)
from pepperpy.event.transports.nats import NatsTransport
from pepperpy.event.transports.rabbitmq import RabbitMQTransport
from tests.conftest import unique_name
from tests.helpers import delete_redis_keys
from tests.processing.retry_waits import PAUSE, failing_processor, gated_processor

#: a close that does not wait for the pause returns well within this
_CLOSE = 10.0
_WAIT = 30.0
NextHandler = Callable[[Event], Awaitable[None]]
_CUT = "not tried again: the EventBus closed during the wait before attempt 2 of 5"


def _recording(got: list[int], arrived: asyncio.Event) -> EventProcessor:
    processor = EventProcessor()

    @processor.handle("order.*")
    async def charge(event: Event) -> None:
        got.append(event.data["n"])
        arrived.set()

    return processor


def _rate_limited(got: list[int], waiting: asyncio.Event) -> EventProcessor:
    """Handles ``order.*`` at one event an hour (the first at once): ``waiting`` is set
    as an event reaches the ``RateLimitMiddleware``, which then waits (after the first)."""
    reached: list[int] = []

    async def mark(event: Event, next_handler: NextHandler) -> None:
        reached.append(event.data["n"])
        if len(reached) > 1:
            waiting.set()
        await next_handler(event)

    processor = EventProcessor().use(mark, RateLimitMiddleware(1 / PAUSE, burst=1))

    @processor.handle("order.*")
    async def charge(event: Event) -> None:
        got.append(event.data["n"])

    return processor


@pytest.mark.parametrize("group", [None, "billing"])
async def test_memory_close_cuts_a_retry_wait_and_dead_letters_the_event(
    group: str | None,
) -> None:
    tried: list[int] = []
    first_try = asyncio.Event()
    seen: list[DeadLetter] = []
    republished: list[Event] = []
    processor, letters = failing_processor(tried, first_try)
    bus = EventBus()
    attachment = processor.attach(bus, "order.*", group=group)

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
    letter = seen[0]
    assert letter.handler.__name__ == "charge"  # the processor's handler that failed
    assert isinstance(letter.exception, ConnectionError)
    assert letter.exception.__notes__ == [_CUT]
    assert [e.metadata["dlreason"] for e in republished] == [
        f"ConnectionError: payment gateway down ({_CUT})"
    ]
    assert list(letters.dead_letters) == []  # the bus's dead letter, as for its own cut
    assert attachment.processed == 0


async def test_memory_close_lets_a_running_try_finish_then_skips_the_wait() -> None:
    gate, started = asyncio.Event(), asyncio.Event()
    tried: list[int] = []
    bus = EventBus()
    gated_processor(tried, started, gate).attach(bus, "order.*")
    await bus.start()
    publishing = asyncio.ensure_future(bus.publish("order.placed", {"n": 4}))
    await asyncio.wait_for(started.wait(), _WAIT)

    closing = asyncio.ensure_future(bus.close())
    await asyncio.sleep(0)  # close() has begun: the try in hand still finishes
    assert not closing.done()
    gate.set()
    await asyncio.wait_for(closing, _CLOSE)  # the wait that try's failure starts is cut
    await asyncio.wait_for(publishing, _CLOSE)
    assert tried == [4]
    assert [letter.attempts for letter in bus.dead_letters] == [1]
    assert bus.dead_letters[0].exception.__notes__ == [
        "not tried again: the EventBus closed during the wait before attempt 2 of 3"
    ]


async def test_memory_close_cuts_a_rate_limit_wait_and_dead_letters_the_event() -> None:
    got: list[int] = []
    waiting = asyncio.Event()
    bus = EventBus()
    _rate_limited(got, waiting).attach(bus, "order.*")
    await bus.start()
    await asyncio.wait_for(bus.publish("order.placed", {"n": 1}), _WAIT)  # the token
    publishing = asyncio.ensure_future(bus.publish("order.placed", {"n": 2}))
    await asyncio.wait_for(waiting.wait(), _WAIT)

    await asyncio.wait_for(bus.close(), _CLOSE)  # waited the hour out before

    await asyncio.wait_for(publishing, _CLOSE)
    assert got == [1]
    [letter] = bus.dead_letters
    assert letter.event.data == {"n": 2}
    assert isinstance(letter.exception, ClosedError)
    assert "RateLimitMiddleware" in str(letter.exception)
    assert letter.attempts == 0  # its handlers never ran


@pytest.fixture
async def bus_url(redis_url: str) -> AsyncIterator[str]:
    namespace = unique_name("closepause")
    yield f"{redis_url}?namespace={namespace}"
    await delete_redis_keys(redis_url, f"{namespace}:*")


@pytest.mark.redis
async def test_redis_close_leaves_a_group_event_for_the_next_member(
    bus_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    await _group_event_goes_to_the_next_member(lambda: EventBus(transport=bus_url), caplog)


@pytest.mark.rabbitmq
async def test_rabbitmq_close_leaves_a_group_event_for_the_next_member(
    amqp_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    exchange = unique_name("closepause")
    # delete_topology() deletes what its own transport declared: keep every one
    transports: list[RabbitMQTransport] = []

    def make() -> EventBus:
        transports.append(RabbitMQTransport(amqp_url, exchange=exchange))
        return EventBus(transport=transports[-1])

    try:
        await _group_event_goes_to_the_next_member(make, caplog)
    finally:
        for transport in transports:
            await transport.delete_topology()


@pytest.mark.nats
async def test_nats_close_leaves_a_group_event_for_the_next_member(
    nats_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    name = unique_name("closepause")
    try:
        await _group_event_goes_to_the_next_member(
            lambda: EventBus(transport=NatsTransport(nats_url, stream=name.upper(), prefix=name)),
            caplog,
        )
    finally:
        await NatsTransport(nats_url, stream=name.upper()).delete_stream()


async def _group_event_goes_to_the_next_member(
    make: Callable[[], EventBus], caplog: pytest.LogCaptureFixture
) -> None:
    tried: list[int] = []
    got: list[int] = []
    first_try, arrived = asyncio.Event(), asyncio.Event()
    failing, letters = failing_processor(tried, first_try)
    first = make()
    failing.attach(first, "order.*", group="billing")
    caplog.set_level(logging.WARNING, "pepperpy.event.bus")
    try:
        async with make() as publisher:
            await first.start()
            await publisher.publish("order.placed", {"n": 7})
            await asyncio.wait_for(first_try.wait(), _WAIT)

            await asyncio.wait_for(first.close(), _CLOSE)  # waited the hour out before

            assert list(first.dead_letters) == []  # not dead-lettered for the shutdown
            assert list(letters.dead_letters) == []
            cut = [r for r in caplog.records if getattr(r, "kind", None) == "retry_cut"]
            assert [(r.attempt, r.max_attempts, r.group) for r in cut] == [(1, 5, "billing")]
            async with make() as second:
                # left unacknowledged: the group's next member gets it
                _recording(got, arrived).attach(second, "order.*", group="billing")
                await second.start()
                await asyncio.wait_for(arrived.wait(), _WAIT)
    finally:
        await asyncio.wait_for(first.close(), _CLOSE)
    assert got == [7]
    assert tried == [7]


@pytest.mark.redis
async def test_redis_close_dead_letters_an_ungrouped_event(bus_url: str) -> None:
    """An ungrouped subscription's reader goes with the close: nothing delivers the
    event again, so it is dead-lettered rather than lost."""
    tried: list[int] = []
    first_try = asyncio.Event()
    processor, _ = failing_processor(tried, first_try)
    bus = EventBus(transport=bus_url)
    processor.attach(bus, "order.*")
    try:
        await bus.start()
        await bus.publish("order.placed", {"n": 3})
        await asyncio.wait_for(first_try.wait(), _WAIT)
        await asyncio.wait_for(bus.close(), _CLOSE)  # waited the hour out before
    finally:
        await asyncio.wait_for(bus.close(), _CLOSE)
    assert tried == [3]
    assert [letter.attempts for letter in bus.dead_letters] == [1]
    assert bus.dead_letters[0].exception.__notes__ == [_CUT]


@pytest.mark.redis
async def test_redis_close_during_a_rate_limit_wait_leaves_a_group_event(bus_url: str) -> None:
    got: list[int] = []
    again: list[int] = []
    waiting, arrived = asyncio.Event(), asyncio.Event()
    first = EventBus(transport=bus_url)
    _rate_limited(got, waiting).attach(first, "order.*", group="billing")
    try:
        async with EventBus(transport=bus_url) as publisher:
            await first.start()
            await publisher.publish("order.placed", {"n": 1})
            await publisher.publish("order.placed", {"n": 2})
            await asyncio.wait_for(waiting.wait(), _WAIT)

            await asyncio.wait_for(first.close(), _CLOSE)  # waited the hour out before

            assert got == [1]
            assert list(first.dead_letters) == []
            async with EventBus(transport=bus_url) as second:
                _recording(again, arrived).attach(second, "order.*", group="billing")
                await second.start()
                await asyncio.wait_for(arrived.wait(), _WAIT)
    finally:
        await asyncio.wait_for(first.close(), _CLOSE)
    assert again == [2]  # the first one was acknowledged as handled
