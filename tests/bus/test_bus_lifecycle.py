"""Bus lifecycle edge cases on every transport: handlers raising CancelledError, close()
from a handler or twice at once, subscriptions added after start, and bad publish args."""

from __future__ import annotations

import asyncio
import datetime
import decimal
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from pepperpy.event import (
    ClosedError,
    ConfigurationError,
    Event,
    EventBus,
    EventStore,
    PatternError,
    RetryPolicy,
    SerializationError,
    Transport,
    TransportError,
)
from pepperpy.event.transports import Subscription
from tests.conftest import unique_name
from tests.helpers import eventually

FAST_RETRY = RetryPolicy.fixed(max_attempts=2, base_delay=0.01)

Factory = Callable[[], Transport]


async def _cleanup(kind: str, url: str, made: list[Transport], name: str) -> None:
    for transport in made:
        await transport.close()
    if kind == "nats" and made:
        await made[0].delete_stream()  # type: ignore[attr-defined]
    elif kind == "rabbitmq":
        for transport in made:
            await transport.delete_topology()  # type: ignore[attr-defined]
    elif kind == "redis":
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(url)
        keys = [k async for k in client.scan_iter(f"{name}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


@pytest.fixture(params=["memory", "redis", "nats", "rabbitmq"])
async def factory(request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, Factory]]:
    """(kind, a zero-argument maker of fresh transports on one unique namespace)."""
    kind: str = request.param
    name = unique_name("pep")
    made: list[Transport] = []
    url = ""
    if kind == "memory":
        from pepperpy.event.transports.memory import MemoryTransport

        shared = MemoryTransport()

        def make() -> Transport:
            return shared  # one in-process broker: "another bus" is the same one

    elif kind == "redis":
        from pepperpy.event.transports.redis import RedisTransport

        url = request.getfixturevalue("redis_url")

        def make() -> Transport:
            made.append(RedisTransport(url, namespace=name))
            return made[-1]

    elif kind == "nats":
        from pepperpy.event.transports.nats import NatsTransport

        url = request.getfixturevalue("nats_url")

        def make() -> Transport:
            made.append(NatsTransport(url, stream=name.upper(), prefix=name, ack_wait=5.0))
            return made[-1]

    else:
        from pepperpy.event.transports.rabbitmq import RabbitMQTransport

        url = request.getfixturevalue("amqp_url")

        def make() -> Transport:
            made.append(RabbitMQTransport(url, exchange=name))
            return made[-1]

    yield kind, make
    await _cleanup(kind, url, made, name)


def pair(kind: str, make: Factory, **options: Any) -> tuple[EventBus, EventBus]:
    """A consuming bus and a publishing one (the same bus on memory://)."""
    consumer = EventBus(transport=make(), retry_policy=FAST_RETRY, **options)
    producer = consumer if kind == "memory" else EventBus(transport=make())
    return consumer, producer


# -- 1: a handler raising CancelledError is a failed delivery, not a dead consumer -------


@pytest.mark.parametrize("group", [None, "g"])
async def test_handler_raising_cancelled_error_fails_that_delivery_only(
    factory: tuple[str, Factory], group: str | None
) -> None:
    kind, make = factory
    bus, producer = pair(kind, make)
    seen: Counter[int] = Counter()

    @bus.subscribe("h.*", group=group)
    async def handler(event: Event) -> None:
        seen[event.data] += 1
        if event.data == 0 and seen[0] == 1:
            cancelled = asyncio.get_running_loop().create_future()
            cancelled.cancel()
            await cancelled  # raises CancelledError in the handler, not a shutdown

    async with asyncio.timeout(30):
        await bus.start()
        for n in range(5):
            await producer.publish("h.x", n)
        await eventually(lambda: all(seen[n] for n in range(5)), timeout=10)
        await eventually(lambda: len(bus.dead_letters) == 1, timeout=10)
        assert isinstance(bus.dead_letters[0].exception, asyncio.CancelledError)
        assert bus.dead_letters[0].event.data == 0
        await producer.close()
        await bus.close()


# -- 3: close() from one of the bus's own handlers ------------------------------------


@pytest.mark.parametrize("group", [None, "g"])
async def test_close_called_from_a_handler_returns_and_the_bus_closes(
    factory: tuple[str, Factory], group: str | None
) -> None:
    kind, make = factory
    bus, producer = pair(kind, make)
    state: dict[str, Any] = {}

    @bus.subscribe("ctl.*", group=group)
    async def handler(event: Event) -> None:
        async with asyncio.timeout(5):
            await bus.close()
        state["returned"] = True
        await asyncio.sleep(0.05)  # still running while the shutdown waits for it
        state["finished"] = True

    async with asyncio.timeout(30):
        await bus.start()
        await producer.publish("ctl.stop", 1)
        await eventually(lambda: "returned" in state, timeout=10)
        if producer is not bus:
            await producer.close()
        await bus.close()  # waits for the shutdown the handler started
        assert state.get("finished")
    with pytest.raises(ClosedError):
        await bus.publish("ctl.again", 2)


# -- 4: every close() returns only once the shutdown is complete -----------------------


async def test_a_second_concurrent_close_waits_for_the_first(
    factory: tuple[str, Factory],
) -> None:
    kind, make = factory
    bus, producer = pair(kind, make)
    done: list[int] = []
    started = asyncio.Event()

    @bus.subscribe("c.*", group="g")
    async def handler(event: Event) -> None:
        started.set()
        await asyncio.sleep(0.5)
        done.append(event.data)

    async with asyncio.timeout(30):
        await bus.start()
        if kind == "memory":
            publishing = asyncio.ensure_future(producer.publish("c.x", 1))
        else:
            await producer.publish("c.x", 1)
            await producer.close()
        await started.wait()
        first = asyncio.ensure_future(bus.close())
        await asyncio.sleep(0.05)
        await bus.close()
        assert done == [1]
        await first
        if kind == "memory":
            await publishing


# -- 2: subscribing after start registers at once ---------------------------------------


async def test_subscription_added_after_start_is_registered_without_a_publish(
    factory: tuple[str, Factory],
) -> None:
    kind, make = factory
    if kind == "memory":
        pytest.skip("on memory:// the publisher is the same bus, whose publish registers it")
    consumer, producer = pair(kind, make)
    got: list[Any] = []

    @consumer.subscribe("orders.early")
    def early(event: Event) -> None:
        got.append(("early", event.data))

    async with asyncio.timeout(30):
        async with consumer, producer:

            @consumer.subscribe("orders.late")
            def late(event: Event) -> None:
                got.append(("late", event.data))

            # no await on the consumer: the registration must happen by itself
            for attempt in range(100):
                await producer.publish("orders.late", attempt)
                if got:
                    break
                await asyncio.sleep(0.1)
            assert got and got[0][0] == "late"


async def test_subscribe_on_a_closed_bus_is_refused() -> None:
    bus = EventBus()
    await bus.close()
    with pytest.raises(ClosedError):
        bus.subscribe("a.*")


# -- 5: bad publish arguments fail the same way everywhere ------------------------------


async def test_bad_topic_and_headers_are_refused_clearly_on_every_transport(
    factory: tuple[str, Factory],
) -> None:
    kind, make = factory
    bus = EventBus(transport=make())
    async with asyncio.timeout(30), bus:
        with pytest.raises(TypeError, match="topic must be a str"):
            await bus.publish(["a.b"], 1)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="headers keys must be str"):
            await bus.publish("a.b", 1, headers={1: 2})  # type: ignore[dict-item]
        with pytest.raises(TypeError, match="headers must be a mapping"):
            await bus.publish("a.b", 1, headers=["x"])  # type: ignore[arg-type]
        with pytest.raises(SerializationError, match="headers must hold JSON-able"):
            await bus.publish("a.b", 1, headers={"x": object()})
        with pytest.raises(SerializationError, match="headers must hold JSON-able"):
            await bus.publish("a.b", 1, headers={"n": float("nan")})
        await bus.publish("a.b", 1, headers={"n": 1.5, "tags": ["x"], "ok": True})


async def test_a_pattern_the_broker_cannot_express_is_refused_at_subscribe(
    factory: tuple[str, Factory],
) -> None:
    # NATS reads '>' as a wildcard; AMQP binding keys hold at most 255 bytes. Refused where
    # written, the bus stays usable (it used to fail every later publish instead)
    kind, make = factory
    bus = EventBus(transport=make())
    got: list[Event] = []
    refused = {"nats": "orders.>", "rabbitmq": "orders." + "x" * 300}.get(kind)
    if refused is not None:
        with pytest.raises(PatternError, match="position"):
            bus.subscribe(refused)(got.append)
    bus.subscribe("orders.*")(got.append)
    async with asyncio.timeout(30), bus:
        await bus.publish("orders.placed", 1)
        await eventually(lambda: [e.data for e in got] == [1])


async def test_a_transport_serves_one_bus(factory: tuple[str, Factory]) -> None:
    # two buses on one transport shared its connections, consumers and subscription
    # names: on RabbitMQ each event reached one of the buses, on NATS the second start()
    # failed, on Redis closing one bus closed the other's connection
    kind, make = factory
    transport = make()
    bus = EventBus(transport=transport, retry_policy=FAST_RETRY)
    with pytest.raises(ConfigurationError, match="create one transport per bus"):
        EventBus(transport=transport)
    got: list[Event] = []
    bus.subscribe("own.*")(got.append)
    async with asyncio.timeout(30), bus:  # the bus that has it is not disturbed
        await bus.publish("own.x", 1)
        await eventually(lambda: [e.data for e in got] == [1])


class _FailingTransport(Transport):
    """Connects, then cannot register a subscription (as a broker refusing it would)."""

    distributed = False

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def start(self) -> None:
        self.calls.append("start")

    async def publish(self, event: Event, *, key: str | None = None) -> None:
        self.calls.append("publish")

    async def subscribe(self, subscription: Subscription) -> None:
        raise TransportError("the broker refused the subscription")

    async def close(self) -> None:
        self.calls.append("close")


async def test_async_with_closes_what_start_opened_when_start_fails() -> None:
    transport = _FailingTransport()
    bus = EventBus(transport=transport)
    bus.subscribe("a.*")(lambda event: None)
    with pytest.raises(TransportError, match="refused"):
        async with bus:
            raise AssertionError("the body must not run")
    assert transport.calls == ["start", "close"]
    with pytest.raises(ClosedError):
        await bus.publish("a.b", 1)


async def test_event_metadata_no_transport_can_carry_is_refused_on_every_transport(
    factory: tuple[str, Factory],
) -> None:
    kind, make = factory
    bus = EventBus(transport=make())
    async with asyncio.timeout(30), bus:
        with pytest.raises(SerializationError, match="event metadata must hold JSON-able"):
            await bus.publish("a.b", Event("a.b", 1, {"request": object()}))
        with pytest.raises(TypeError, match="event metadata keys must be str"):
            await bus.publish("a.b", Event("a.b", 1, {1: "x"}))  # type: ignore[dict-item]
        # nested: JSON would turn the key into text (merging it with "2"), a set into a list
        for nested in ({"n": {2: "a", "2": "b"}}, {"tags": {"vip"}}):
            with pytest.raises(SerializationError, match="metadata"):
                await bus.publish("a.b", Event("a.b", 1, nested))


async def test_subscribers_see_the_same_data_types_on_every_transport(
    factory: tuple[str, Factory],
) -> None:
    # a broker carries datetime, Decimal, UUID and bytes as their JSON form; memory://
    # delivers that same form, so code tested in memory behaves alike on a broker
    kind, make = factory
    consumer, producer = pair(kind, make)
    got: list[Event] = []
    consumer.subscribe("typed.*")(got.append)
    at = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    data = {"at": at, "amount": decimal.Decimal("9.99"), "ref": uuid.UUID(int=7), "n": [1.5]}
    async with asyncio.timeout(30), consumer, producer:
        await producer.publish("typed.a", data, headers={"when": at})
        await producer.publish("typed.b", {"plain": [1, "x", None, True]})
        await eventually(lambda: len(got) == 2)
    typed, plain = sorted(got, key=lambda e: e.type)
    assert dict(typed.data) == {
        "at": "2024-01-01T00:00:00+00:00",
        "amount": "9.99",
        "ref": str(uuid.UUID(int=7)),
        "n": [1.5],
    }
    assert typed.metadata["when"] == "2024-01-01T00:00:00+00:00"
    assert plain.data == {"plain": [1, "x", None, True]}


async def test_an_event_read_from_a_store_arrives_without_its_store_fields(
    factory: tuple[str, Factory],
) -> None:
    # memory:// handed over the stored event itself (stream, position, global_position,
    # recorded_at set); a broker's subscriber gets the event from the wire, without them
    kind, make = factory
    store = EventStore()
    await store.append("order-7", Event("orders.created", {"n": 1}, {"origin": "shop"}))
    [stored] = await store.get_stream("order-7")
    await store.close()
    assert stored.stream == "order-7"
    consumer, producer = pair(kind, make)
    got: list[Event] = []
    consumer.subscribe("orders.*")(got.append)
    async with asyncio.timeout(30), consumer, producer:
        await producer.publish("orders.created", stored)
        await eventually(lambda: len(got) == 1)
    [event] = got
    assert (event.id, event.data, event.metadata) == (stored.id, {"n": 1}, {"origin": "shop"})
    assert event.timestamp == stored.timestamp
    fields = (event.stream, event.position, event.global_position, event.recorded_at)
    assert fields == (None, None, None, None)
    assert stored.stream == "order-7"  # the caller's event is left as it was


@pytest.mark.parametrize(
    "data", [{"v": "\ud800"}, {"\udc00": 1}, "\ud83d", ["ok", {"deep": "x\udfff"}]], ids=repr
)
async def test_data_no_broker_can_encode_is_refused_on_every_transport(
    factory: tuple[str, Factory], data: Any
) -> None:
    # a lone surrogate is not valid UTF-8: every broker refused it at publish, while
    # memory:// delivered it, so code tested in memory failed on a broker
    kind, make = factory
    bus = EventBus(transport=make())
    got: list[Event] = []
    bus.subscribe("s.*")(got.append)
    async with asyncio.timeout(30), bus:
        with pytest.raises(SerializationError, match="holds a lone surrogate"):
            await bus.publish("s.x", data)
        with pytest.raises(SerializationError, match="holds a lone surrogate"):
            await bus.publish("nobody.listens", data)  # a broker encodes it all the same
        with pytest.raises(SerializationError, match="lone surrogate"):
            await bus.publish("s.x", 1, key="k\ud800")  # the key travels in metadata
        await bus.publish("s.x", "fine")
        await eventually(lambda: len(got) == 1)
    assert got[0].data == "fine"


# -- 1, transport level: the NATS and RabbitMQ consumers survive a CancelledError -------


@pytest.mark.parametrize("group", [None, "g"])
async def test_broker_consumer_redelivers_after_a_cancelled_delivery(
    factory: tuple[str, Factory], group: str | None
) -> None:
    """Without the bus in between: deliver() raising CancelledError is a failed delivery."""
    kind, make = factory
    if kind in ("memory", "redis"):
        pytest.skip("transport-level check for the NATS and RabbitMQ consumers")
    transport = make()
    seen: Counter[int] = Counter()

    async def deliver(event: Event) -> None:
        seen[event.data] += 1
        if event.data == 0 and seen[0] == 1:
            cancelled = asyncio.get_running_loop().create_future()
            cancelled.cancel()
            await cancelled

    async with asyncio.timeout(30):
        await transport.start()
        await transport.subscribe(Subscription("h.*", deliver, group, unique_name("s")))
        for n in range(5):
            await transport.publish(Event("h.x", n))
        await eventually(lambda: seen[0] >= 2 and all(seen[n] for n in range(5)), timeout=15)
        await transport.close()
