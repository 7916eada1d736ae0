"""RabbitMQ groups: per-key order across a connection loss (the hand-over grace).

When a member's connection drops, the broker hands its partitions to the next member at
once, with what it had not acknowledged first, while its handler in progress runs on
(it is not interrupted). The new member handled that event again and the key's later
events during the first handling (soak audit F4: events 1 to 5 of a key started and
ended on the new member while event 0 still ran on the old one). Now a member that takes
a partition over waits ``handover_grace`` before the keys the other had not
acknowledged; other keys, graceful hand-overs and a member's own redeliveries do not
wait.

Each member connects through a fault proxy of its own, so one member's connection can
be reset alone.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from pepperpy.event import ConfigurationError, Event, EventBus
from pepperpy.event.transports.rabbitmq import RabbitMQTransport
from tests.bus.faultproxy import FaultProxy, finishes
from tests.faultproxy import Action, Link
from tests.helpers import eventually

pytestmark = pytest.mark.rabbitmq


class Log:
    """When each member started and ended each event (handler runs, in order)."""

    def __init__(self) -> None:
        self.runs: list[tuple[str, str, float, float | None]] = []  # member, event, start, end

    def handler(self, member: str, slow: dict[str, float]) -> Callable[[Event], Any]:
        async def handle(event: Event) -> None:
            index = len(self.runs)
            self.runs.append((member, event.data, time.monotonic(), None))
            await asyncio.sleep(slow.pop(event.data, 0.02))  # slow once, the first time
            who, what, started, _ = self.runs[index]
            self.runs[index] = (who, what, started, time.monotonic())

        return handle

    def started(self, member: str) -> list[str]:
        return [what for who, what, _, _ in self.runs if who == member]

    def overlaps(self, key_events: set[str]) -> list[str]:
        """Runs of the key's events that started while another run of them had not ended."""
        found = []
        runs = [run for run in self.runs if run[1] in key_events]
        for i, (who, what, start, _) in enumerate(runs):
            for other, other_what, other_start, other_end in runs[:i]:
                if other_start <= start and (other_end is None or other_end > start):
                    found.append(f"{who} started {what} while {other} ran {other_what}")
        return found


@pytest.fixture
async def second_proxy(proxy: FaultProxy) -> AsyncIterator[FaultProxy]:
    async with FaultProxy(5672) as made:
        yield made


def member(
    through_proxy: Callable[..., RabbitMQTransport],
    first: RabbitMQTransport | None = None,
    proxy: FaultProxy | None = None,
    **options: Any,
) -> RabbitMQTransport:
    """The first member's transport (through the ``proxy`` fixture), or another one's,
    through ``proxy``, on the first one's exchange."""
    query = options.pop("query", "")
    options.setdefault("partitions", 1)  # one queue: the first member is its active one
    options.setdefault("queue_type", "classic")
    options.setdefault("reconnect_interval", 0.2)
    if first is None:
        return through_proxy(query, **options)
    assert proxy is not None
    url = f"amqp://guest:guest@127.0.0.1:{proxy.port}/{query}"
    return RabbitMQTransport(url, exchange=first.exchange_name, **options)


async def test_the_key_of_an_event_in_progress_on_a_lost_member_waits_the_grace(
    proxy: FaultProxy,
    second_proxy: FaultProxy,
    through_proxy: Callable[..., RabbitMQTransport],
) -> None:
    """The soak's repro: member a runs event 0 of key k for 2 s; its connection is reset
    0.3 s in. Member b takes the partition over: k's events wait the grace (4 s), so
    none of them starts while a still runs event 0; key j, published after the reset and
    never in flight on a, is handled at once."""
    log = Log()
    a = member(through_proxy, handover_grace=4)
    b = member(through_proxy, a, second_proxy, handover_grace=4)
    bus_a, bus_b = EventBus(transport=a), EventBus(transport=b)
    bus_a.subscribe("jobs.*", group="workers")(log.handler("a", {"k0": 2.0}))
    bus_b.subscribe("jobs.*", group="workers")(log.handler("b", {}))
    try:
        async with bus_a:
            async with bus_b:  # a subscribed first: a is the partition's active member
                for n in range(6):
                    await bus_a.publish("jobs.run", f"k{n}", key="k")
                await eventually(lambda: log.started("a") == ["k0"])
                await asyncio.sleep(0.3)
                assert proxy.drop()  # a's connection only
                # once b is the active member (it got k's events, held): j0 goes to b
                await eventually(lambda: b._consumers[0]._acks is not None)
                await bus_b.publish("jobs.run", "j0", key="j")
                await eventually(lambda: len(log.started("b")) == 7, timeout=20)
    finally:
        await finishes(b.close(), 15)
    k_events = {f"k{n}" for n in range(6)}
    assert log.overlaps(k_events) == []
    assert log.started("b") == ["j0", *[f"k{n}" for n in range(6)]]  # j did not wait


async def test_a_member_whose_link_went_silent_starts_nothing_the_next_one_gets(
    proxy: FaultProxy,
    second_proxy: FaultProxy,
    through_proxy: Callable[..., RabbitMQTransport],
) -> None:
    """A partition, not a reset: a's link stops moving while it works through 30 events
    of key k (0.3 s each). The broker gives a up after its heartbeat timeout (about 3 s
    with heartbeat=1) and b takes over (after a 1-s grace); aiormq gives the connection
    up only after (1 + 1) * 3 = 6 s, and a went on starting its prefetched events until
    then, while b ran them too. A member now starts nothing once it heard nothing from
    the broker for a heartbeat interval."""
    log = Log()
    a = member(through_proxy, query="?heartbeat=1", handover_grace=1)
    b = member(through_proxy, a, second_proxy, handover_grace=1)
    bus_a, bus_b = EventBus(transport=a), EventBus(transport=b)
    bus_a.subscribe("jobs.*", group="workers")(log.handler("a", {f"k{n}": 0.3 for n in range(30)}))
    bus_b.subscribe("jobs.*", group="workers")(log.handler("b", {}))
    try:
        async with bus_a:
            async with bus_b:
                for n in range(30):
                    await bus_b.publish("jobs.run", f"k{n}", key="k")
                await eventually(lambda: log.started("a") == ["k0"])
                proxy.pause()  # a's link only: silent both ways, nothing reset
                started = len(log.started("a"))
                await eventually(lambda: len(log.started("b")) >= 30 - started, timeout=30)
                proxy.resume()
    finally:
        proxy.resume()
        await finishes(b.close(), 15)
    assert log.overlaps({f"k{n}" for n in range(30)}) == []
    handled_by_b = log.started("b")
    assert handled_by_b == sorted(handled_by_b, key=lambda e: int(e[1:]))  # in order


async def test_without_a_grace_the_new_member_overlaps_the_old_one(
    proxy: FaultProxy,
    second_proxy: FaultProxy,
    through_proxy: Callable[..., RabbitMQTransport],
) -> None:
    """``handover_grace=0`` keeps the old behaviour: the broker's hand-over is immediate."""
    log = Log()
    a = member(through_proxy, handover_grace=0)
    b = member(through_proxy, a, second_proxy, handover_grace=0)
    bus_a, bus_b = EventBus(transport=a), EventBus(transport=b)
    bus_a.subscribe("jobs.*", group="workers")(log.handler("a", {"k0": 2.0}))
    bus_b.subscribe("jobs.*", group="workers")(log.handler("b", {}))
    try:
        async with bus_a:
            async with bus_b:
                for n in range(3):
                    await bus_a.publish("jobs.run", f"k{n}", key="k")
                await eventually(lambda: log.started("a") == ["k0"])
                await asyncio.sleep(0.3)
                assert proxy.drop()
                await eventually(lambda: len(log.started("b")) == 3, timeout=20)
                assert log.overlaps({"k0", "k1", "k2"})  # a still runs k0
    finally:
        await finishes(b.close(), 15)


async def test_a_graceful_hand_over_does_not_wait_the_grace(
    proxy: FaultProxy,
    second_proxy: FaultProxy,
    through_proxy: Callable[..., RabbitMQTransport],
) -> None:
    """Member a closes with events of key k prefetched, unstarted: it leaves a release
    mark, and b, though its first deliveries are redeliveries, handles them at once (the
    grace, 60 s, would outlast the test)."""
    log = Log()
    a = member(through_proxy, handover_grace=60)
    b = member(through_proxy, a, second_proxy, handover_grace=60)
    bus_a, bus_b = EventBus(transport=a), EventBus(transport=b)
    bus_a.subscribe("jobs.*", group="workers")(log.handler("a", {"k0": 0.5}))
    bus_b.subscribe("jobs.*", group="workers")(log.handler("b", {}))
    try:
        await bus_a.start()
        await bus_b.start()  # after a: a is the partition's active member
        for n in range(6):
            await bus_a.publish("jobs.run", f"k{n}", key="k")
        await eventually(lambda: log.started("a") == ["k0"])
        await bus_a.close()  # lets k0 end, then returns k1..k5 unstarted
        await eventually(lambda: len(log.runs) >= 6, timeout=15)
        assert log.started("b") == [f"k{n}" for n in range(1, 6)]
        # b took the mark a left
        assert not await b._queue_exists(f"{b._consumers[0].queue_name}.released")
    finally:
        await finishes(bus_a.close(), 15)
        await finishes(bus_b.close(), 15)


@pytest.mark.parametrize("pause", [0.0, 0.005, 0.05])
async def test_members_joining_and_leaving_fast_never_wait_the_grace(
    through_proxy: Callable[..., RabbitMQTransport], pause: float
) -> None:
    """A member of one process leaves (unsubscribe) and another joins, again and again,
    however soon after the join: each hands the partition over in order, so none of the
    next ones waits the grace (60 s, longer than the test), though each takes over the
    previous one's unstarted events, redelivered. A member that left while it was still
    looking for its predecessor's release mark passes one on once it has the answer."""
    transport = member(through_proxy, handover_grace=60, partitions=2)
    bus = EventBus(transport=transport)
    handled: list[int] = []

    async def work(event: Event) -> None:
        handled.append(event.data)
        await asyncio.sleep(0.01)

    bus.subscribe("jobs.*", group="workers")(work)
    async with bus:
        for n in range(30):  # one key: the backlog waits at one member
            await bus.publish("jobs.run", n, key="one")
        for _ in range(8):
            await asyncio.sleep(pause)
            assert await bus.unsubscribe("jobs.*", work, group="workers") is True
            bus.subscribe("jobs.*", group="workers")(work)
            await bus.start()
        await eventually(lambda: len(set(handled)) == 30, timeout=20)
    assert sorted(set(handled)) == list(range(30))


@pytest.mark.parametrize("ended", [False, True], ids=["running", "ended"])
async def test_a_members_own_redeliveries_do_not_wait_the_grace(
    proxy: FaultProxy, through_proxy: Callable[..., RabbitMQTransport], ended: bool
) -> None:
    """A lone member whose connection is reset while it runs event 0 of key k: the
    broker gives it 0..3 again. Whether 0's first handling still runs when they come
    (they queue behind it) or has ended (it ran nowhere else), nothing waits the grace."""
    log = Log()
    transport = member(through_proxy, handover_grace=60)
    bus = EventBus(transport=transport)
    bus.subscribe("jobs.*", group="workers")(log.handler("a", {"k0": 1.5}))
    async with bus:
        for n in range(4):
            await bus.publish("jobs.run", f"k{n}", key="k")
        await eventually(lambda: log.started("a") == ["k0"])
        await asyncio.sleep(0.3)
        if ended:  # back only once k0's first handling has ended
            proxy.refuse()
        assert proxy.drop()
        if ended:
            await eventually(lambda: log.runs[0][3] is not None, timeout=10)
            proxy.heal()
        await eventually(lambda: "k3" in log.started("a"), timeout=15)
    assert log.started("a")[:1] == ["k0"]
    assert [e for e in log.started("a") if e != "k0"] == ["k1", "k2", "k3"]
    assert log.overlaps({f"k{n}" for n in range(4)}) == []


#: an AMQP basic.ack method frame's class and method ids (60, 80)
BASIC_ACK = b"\x00\x3c\x00\x50"


async def test_events_whose_acknowledgement_was_lost_are_known_as_the_members_own(
    proxy: FaultProxy, through_proxy: Callable[..., RabbitMQTransport]
) -> None:
    """A lone member handles k0..k2; the first acknowledgement it sends is lost with its
    connection (reset instead of forwarded), after the handlers ended. The broker gives
    the events back: handled here, they run nowhere else, so they do not wait the grace
    (60 s): an acknowledgement gets no answer, and the member remembers what it handled."""
    log = Log()
    lost: list[bytes] = []

    def lose_the_first_ack(link: Link, data: bytes) -> Action:
        if BASIC_ACK in data and not lost:
            lost.append(data)
            return "drop"
        return None

    transport = member(through_proxy, handover_grace=60)
    bus = EventBus(transport=transport)
    bus.subscribe("jobs.*", group="workers")(log.handler("a", {}))
    async with bus:
        await eventually(lambda: transport._connected())
        proxy.on_client = lose_the_first_ack
        for n in range(3):
            await bus.publish("jobs.run", f"k{n}", key="k")
        await eventually(lambda: bool(lost))
        await eventually(lambda: log.started("a").count("k0") == 2, timeout=15)
        await eventually(lambda: "k2" in log.started("a"), timeout=15)
    assert log.overlaps({"k0", "k1", "k2"}) == []


@pytest.mark.parametrize("value", [-1, float("nan"), float("inf")])
def test_handover_grace_must_be_seconds_of_zero_or_more(value: Any) -> None:
    with pytest.raises(ConfigurationError, match="handover_grace must be a finite number"):
        RabbitMQTransport("amqp://guest:guest@127.0.0.1:5672/", handover_grace=value)


@pytest.mark.parametrize("value", [True, "5"])
def test_handover_grace_of_a_wrong_type_is_a_type_error(value: Any) -> None:
    with pytest.raises(TypeError, match="handover_grace must be a finite number"):
        RabbitMQTransport("amqp://guest:guest@127.0.0.1:5672/", handover_grace=value)


def test_handover_grace_comes_from_the_url_and_zero_turns_it_off() -> None:
    url = "amqp://guest:guest@127.0.0.1:5672/?handover_grace=0"
    assert RabbitMQTransport(url).handover_grace == 0.0
    assert RabbitMQTransport("amqp://guest:guest@127.0.0.1:5672/").handover_grace == 5.0
    assert RabbitMQTransport(url, handover_grace=2.5).handover_grace == 2.5
