"""``EventBus.publish_many``: memory:// order, and what a batch that fails part way says.

The conformance suite (tests/bus/conformance.py) runs delivery, per-key order and the
refusal of a bad batch on every transport; here: memory://'s batch order, and partial
failures on the real brokers (Redis through the fault proxy, NATS's max_payload), each
in a namespace or stream of the test's own, deleted afterwards.
"""

from __future__ import annotations

import asyncio
import pickle
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from pepperpy.event import (
    AccessDenied,
    BatchPublishError,
    ClosedError,
    Event,
    EventBus,
    SerializationError,
    Subscription,
    Transport,
    TransportError,
)
from pepperpy.event.security import AccessControl, acting_as
from pepperpy.event.transports.nats import NatsTransport
from pepperpy.event.transports.redis import RedisTransport
from tests.bus.faultproxy import FaultProxy, finishes
from tests.bus.test_nats_publish import event_of_size
from tests.conftest import unique_name
from tests.faultproxy import Link
from tests.helpers import eventually, settle

# -- memory:// ------------------------------------------------------------------------


async def test_on_memory_a_batch_runs_the_handlers_in_batch_order_before_it_returns() -> None:
    """Keyed and unkeyed events alike: one after the other, as a loop of publish."""
    bus = EventBus(["orders.*"])
    seen: list[tuple[int, str | None]] = []

    @bus.subscribe("orders.*")
    async def record(event: Event) -> None:
        seen.append((event.data, event.metadata.get("partitionkey")))

    async with bus:
        keys = [None, "a", "b", None, "a"] * 20
        published = await bus.publish_many("orders.placed", range(100), key=lambda n: keys[n])
        assert seen == [(n, keys[n]) for n in range(100)]  # every handler ran already
        assert [e.data for e in published] == list(range(100))


async def test_a_ready_event_in_a_batch_keeps_its_id_and_the_callers_copy_is_untouched() -> None:
    bus = EventBus()
    got: list[Event] = []
    bus.subscribe("users.*", got.append)
    original = Event("users.created", {"id": 1}, {"origin": "test"})
    async with bus:
        published = await bus.publish_many(
            "users.created", [original, {"id": 2}], key="user-1", headers={"h": 1}
        )
    assert [e.id for e in got] == [original.id, published[1].id]
    assert got[0].metadata == {"origin": "test", "h": 1, "partitionkey": "user-1"}
    assert original.metadata == {"origin": "test"}


async def test_a_batch_to_a_topic_the_principal_may_not_publish_to_is_refused_whole() -> None:
    acl = AccessControl(default="allow")
    acl.deny("svc.shop", "publish", "orders.refund.#")
    bus = EventBus(access=acl)
    got: list[Any] = []
    bus.subscribe("#", got.append)
    async with bus:
        with acting_as("svc.shop"):
            with pytest.raises(AccessDenied, match="orders.refund.issued"):
                await bus.publish_many("orders.refund.issued", [1, 2, 3])
            await bus.publish_many("orders.placed", [4])
    assert [e.data for e in got] == [4]


async def test_a_closed_bus_refuses_a_batch() -> None:
    bus = EventBus()
    await bus.start()
    await bus.close()
    with pytest.raises(ClosedError):
        await bus.publish_many("a.b", [1, 2])


async def test_an_error_raised_by_the_key_function_names_the_message() -> None:
    bus = EventBus()
    got: list[Any] = []
    bus.subscribe("a.*", got.append)

    def key(message: dict[str, str]) -> str:
        return message["customer"]

    async with bus:
        with pytest.raises(KeyError) as raised:
            await bus.publish_many("a.b", [{"customer": "c1"}, {"other": 1}], key=key)
        assert raised.value.__notes__ == [
            "publish_many(): messages[1] refused, nothing was published"
        ]
        with pytest.raises(SerializationError, match=r"messages\[0\] .*lone surrogate"):
            await bus.publish_many("a.b", [1], key=lambda m: "\udc80")
    await settle(0.05)
    assert got == []


def test_a_batch_error_pickles_with_what_it_says() -> None:
    events = (Event("a.b", 1), Event("a.b", 2))
    error = BatchPublishError("failed", events, (True, None), {1: TransportError("lost")})
    copy = pickle.loads(pickle.dumps(error))
    assert isinstance(copy, TransportError)
    assert str(copy) == "failed"
    assert copy.outcomes == (True, None) and copy.stored is None
    assert [e.id for e in copy.events] == [e.id for e in events]
    assert str(copy.errors[1]) == "lost"
    assert BatchPublishError("x", events, (False, False), {}).stored is False


# -- Redis through the fault proxy ----------------------------------------------------


async def entries(client: Any, transport: RedisTransport) -> list[int]:
    """The ``n`` of every event the transport's partition streams hold, in stream order."""
    found: list[int] = []
    for stream in transport._streams:
        for _, fields in await client.xrange(stream):
            found.append(Event.from_json(fields[b"event"]).data["n"])
    return found


@pytest.mark.redis
async def test_redis_unreachable_midway_stops_a_keyed_batch_and_says_what_was_stored(
    proxy: FaultProxy, redis_through_proxy: Callable[..., RedisTransport], client: Any
) -> None:
    """One key: published one after the other. Redis going away at the 50th stops the
    batch there: 49 stored, the 50th failed, the rest never sent (and so not stored)."""
    sent = 0

    def go_away_at_the_50th(link: Link, data: bytes) -> str | None:
        nonlocal sent
        if b"XADD" in data:
            sent += 1
            if sent == 50:
                proxy.refuse()
                return "drop"
        return None

    transport = redis_through_proxy(partitions=1, connect_timeout=1.0)
    async with EventBus(transport=transport) as bus:
        proxy.on_client = go_away_at_the_50th
        with pytest.raises(
            BatchPublishError,
            match=r"151 of 200 events not published \(49 stored, 150 not stored, 1 unknown",
        ) as raised:
            await finishes(bus.publish_many("batch.x", [{"n": n} for n in range(200)], key="k"), 10)
        error = raised.value
        assert error.outcomes[:49] == (True,) * 49
        assert list(error.errors) == [49]
        failed = error.errors[49]
        assert isinstance(failed, TransportError)
        assert error.__cause__ is failed
        assert error.outcomes[49] is failed.stored
        assert error.outcomes[50:] == (False,) * 150
        assert error.stored is None  # some were stored
        assert "events[49]" in str(error)
        assert sent == 50, "nothing was sent after the failure"
        proxy.on_client = None
        proxy.heal()
        assert await entries(client, transport) == list(range(49))
        # what was not stored, published again, completes the key in order
        again = [e for e, ok in zip(error.events, error.outcomes, strict=True) if ok is False]
        await bus.publish_many("batch.x", again, key="k")
        assert await entries(client, transport) == [n for n in range(200) if n != 49]


@pytest.mark.redis
async def test_redis_unreachable_midway_stops_an_unkeyed_batch_within_its_window(
    proxy: FaultProxy, redis_through_proxy: Callable[..., RedisTransport], client: Any
) -> None:
    """Concurrent publishes: those in flight finish (and say what became of them); no
    new one starts after the first failure. Redis holds exactly the events said stored,
    and perhaps some of those said unknown, never one said not stored."""
    seen = 0

    def go_away_soon(link: Link, data: bytes) -> str | None:
        nonlocal seen
        if b"XADD" in data:
            seen += 1
            if seen == 3:
                proxy.refuse()
                return "drop"
        return None

    transport = redis_through_proxy(partitions=1, connect_timeout=1.0)
    async with EventBus(transport=transport) as bus:
        proxy.on_client = go_away_soon
        count = 2000
        with pytest.raises(BatchPublishError) as raised:
            await finishes(bus.publish_many("batch.x", [{"n": n} for n in range(count)]), 20)
        outcomes = raised.value.outcomes
        assert len(outcomes) == count
        assert outcomes.count(False) >= count - 2 * 256, "publishing stopped at the failure"
        assert raised.value.errors
        assert all(outcomes[index] is not True for index in raised.value.errors)
        proxy.on_client = None
        proxy.heal()
        held = set(await entries(client, transport))
        said_stored = {n for n in range(count) if outcomes[n] is True}
        maybe = {n for n in range(count) if outcomes[n] is None}
        assert said_stored <= held <= said_stored | maybe


# -- NATS: one event of the batch over the server's max_payload ------------------------


@pytest.fixture
async def names(nats_url: str) -> AsyncIterator[dict[str, str]]:
    name = unique_name("pep_many")
    yield {"stream": name.upper(), "prefix": name}
    await NatsTransport(nats_url, stream=name.upper()).delete_stream()


@pytest.mark.nats
async def test_nats_refusing_one_event_stops_the_batch_there(
    nats_url: str, names: dict[str, str]
) -> None:
    """Too large for the server (known before it is sent): not stored; those before it
    are, and none after it is sent."""
    transport = NatsTransport(nats_url, **names)
    bus = EventBus(transport=transport)
    got: list[int] = []
    bus.subscribe("big.*")(lambda event: got.append(event.data.get("n", -1)))
    async with bus:
        assert transport._nc is not None
        huge = event_of_size(2 * transport._nc.max_payload)
        batch: list[Any] = [{"n": 0}, {"n": 1}, huge, {"n": 3}, {"n": 4}]
        with pytest.raises(BatchPublishError, match=r"events\[2\].*max_payload") as raised:
            await finishes(bus.publish_many("big.one", batch, key="k"), 10)
        assert raised.value.outcomes == (True, True, False, False, False)
        assert raised.value.stored is None
        await eventually(lambda: got == [0, 1])
        await settle()
        assert got == [0, 1]


# -- the default Transport.publish_many, on a transport that records what it is asked ----


class Recording(Transport):
    """Takes a little while per publish and records what overlapped: the contract's
    default ``publish_many`` is what runs (this transport does not override it)."""

    def __init__(self, refuse: int | None = None, *, closing: bool = False) -> None:
        self.in_flight = 0
        self.most_in_flight = 0
        self.most_tasks = 0
        self.keys_in_flight: set[str] = set()
        self.order: dict[str | None, list[int]] = {}
        self.refuse = refuse
        self.closing = closing  # refuse as a transport closing meanwhile does

    async def publish(self, event: Event, *, key: str | None = None) -> None:
        n = event.data
        if key is not None:
            assert key not in self.keys_in_flight, f"two events of {key} at once"
            self.keys_in_flight.add(key)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        self.most_tasks = max(self.most_tasks, len(asyncio.all_tasks()))
        try:
            await asyncio.sleep(0.001 * (n % 3))
            if n == self.refuse and self.closing:
                raise ClosedError(f"closed before {n} was sent", stored=False)
            if n == self.refuse:
                error = TransportError(f"refused {n}")
                error.stored = False
                raise error
            self.order.setdefault(key, []).append(n)
        finally:
            self.in_flight -= 1
            if key is not None:
                self.keys_in_flight.discard(key)

    async def subscribe(self, subscription: Subscription) -> None:
        pass

    async def close(self) -> None:
        pass


async def test_a_large_batch_has_at_most_256_publishes_in_flight_and_keys_in_order() -> None:
    transport = Recording()
    async with EventBus(transport=transport) as bus:
        tasks_before = len(asyncio.all_tasks())
        await bus.publish_many("a.b", range(5000), key=lambda n: f"k{n % 50}" if n % 2 else None)
    assert transport.most_in_flight == 256
    assert transport.most_tasks <= tasks_before + 256
    assert transport.order.pop(None) is not None
    assert transport.order == {
        f"k{k}": [n for n in range(5000) if n % 2 and n % 50 == k] for k in range(1, 50, 2)
    }


async def test_after_a_failure_no_publish_starts_and_in_flight_ones_finish() -> None:
    transport = Recording(refuse=10)
    async with EventBus(transport=transport) as bus:
        with pytest.raises(BatchPublishError, match=r"events\[10\].*refused 10") as raised:
            await bus.publish_many("a.b", range(1000), key=lambda n: f"k{n % 4}")
    outcomes = raised.value.outcomes
    assert outcomes[10] is False and list(raised.value.errors) == [10]
    assert all(outcomes[n] is False for n in range(14, 1000, 4)), "its key stopped there"
    # the other keys' publishes in flight finished, and no more started: a few each
    assert outcomes.count(True) < 100
    published = sorted(n for ns in transport.order.values() for n in ns)
    assert published == [n for n, ok in enumerate(outcomes) if ok]
    assert raised.value.stored is None


async def test_a_publish_a_closing_transport_refused_counts_as_not_stored() -> None:
    """A transport closing meanwhile refuses a publish before sending it with
    ``ClosedError(stored=False)``: the batch said "unknown" for it, as for any error
    but a TransportError."""
    transport = Recording(refuse=3, closing=True)
    async with EventBus(transport=transport) as bus:
        with pytest.raises(BatchPublishError, match=r"closed before 3 was sent") as raised:
            await bus.publish_many("a.b", range(6), key=lambda n: "k")
    assert isinstance(raised.value.errors[3], ClosedError)
    assert raised.value.outcomes == (True, True, True, False, False, False)
    copy = pickle.loads(pickle.dumps(raised.value.errors[3]))
    assert isinstance(copy, ClosedError) and copy.stored is False
    assert ClosedError("closed").stored is None


async def test_a_cancelled_batch_leaves_no_publish_running() -> None:
    transport = Recording()
    async with EventBus(transport=transport) as bus:
        before = asyncio.all_tasks()
        batch = asyncio.ensure_future(bus.publish_many("a.b", range(5000), key=str))
        await asyncio.sleep(0.01)
        assert transport.in_flight > 1  # under way, concurrently
        batch.cancel()
        with pytest.raises(asyncio.CancelledError):
            await batch
        assert transport.in_flight == 0
        assert asyncio.all_tasks() - before == set()
        assert sum(map(len, transport.order.values())) < 5000
