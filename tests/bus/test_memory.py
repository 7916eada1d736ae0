"""The conformance suite on the in-memory transport, plus what is specific to it."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import pytest

from pepperpy.event import (
    ConfigurationError,
    Event,
    EventBus,
    MemoryTransport,
    RetryPolicy,
    Transport,
)
from tests.bus.conformance import BusConformance
from tests.helpers import eventually


class TestMemoryBus(BusConformance):
    @pytest.fixture
    def transport_factory(self) -> Callable[[], Transport | str]:
        return lambda: "memory://"


class TestMemoryTransportObject(BusConformance):
    @pytest.fixture
    def transport_factory(self) -> Callable[[], Transport | str]:
        return MemoryTransport


async def test_publish_returns_after_local_subscribers_ran() -> None:
    bus = EventBus(["users.*"])
    seen: list[str] = []

    @bus.subscribe("users.*")
    async def handler(event: object) -> None:
        seen.append("ran")

    await bus.publish("users.login", {"user_id": "123"})
    assert seen == ["ran"]  # no waiting needed on memory://


def test_unknown_transport_urls_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="kafka"):
        EventBus(transport="kafka://localhost")
    with pytest.raises(ConfigurationError):
        EventBus(transport="memory://somewhere")


# -- per-key order (as on a broker) -----------------------------------------------------------


async def test_one_key_reaches_an_ungrouped_subscription_in_publish_order() -> None:
    bus = EventBus(retry_policy=RetryPolicy.NONE)
    log: list[tuple[str, int]] = []

    @bus.subscribe("acct.*")
    async def audit(event: Event) -> None:
        log.append(("start", event.data))
        await asyncio.sleep(0.02 if event.data % 2 == 0 else 0)
        log.append(("end", event.data))

    async with asyncio.timeout(10):
        await asyncio.gather(*(bus.publish("acct.moved", n, key="a-1") for n in range(6)))
    assert log == [(kind, n) for n in range(6) for kind in ("start", "end")]


async def test_other_keys_and_unkeyed_events_are_not_held_back() -> None:
    bus = EventBus(retry_policy=RetryPolicy.NONE)
    gate = asyncio.Event()
    done: list[str] = []

    @bus.subscribe("acct.*", group="ledger")
    async def work(event: Event) -> None:
        if event.data == "slow":
            await gate.wait()
        done.append(event.data)

    async with asyncio.timeout(10):
        slow = asyncio.ensure_future(bus.publish("acct.moved", "slow", key="a-1"))
        await bus.publish("acct.moved", "other key", key="a-2")
        await bus.publish("acct.moved", "no key")
        assert done == ["other key", "no key"]
        gate.set()
        await slow
    assert done == ["other key", "no key", "slow"]


async def test_a_handler_publishing_with_its_own_key_to_itself_does_not_wait_for_itself() -> None:
    # publish on memory:// waits for the handlers; the new event must run after the one
    # in progress (its key's order), whose handler is the publisher: it runs once that
    # handler returned, as on a broker, and publish returns without waiting for it
    bus = EventBus(retry_policy=RetryPolicy.NONE)
    log: list[str] = []

    @bus.subscribe("acct.*", group="ledger")
    async def work(event: Event) -> None:
        log.append(f"start {event.data}")
        if event.data == 0:
            await bus.publish("acct.moved", 1, key="a-1")
            log.append("published 1")
        log.append(f"end {event.data}")

    async with asyncio.timeout(5):
        await bus.publish("acct.moved", 0, key="a-1")
        await eventually(lambda: "end 1" in log)
    assert log == ["start 0", "published 1", "end 0", "start 1", "end 1"]


async def test_a_dead_letter_with_the_failed_events_key_does_not_deadlock() -> None:
    # the bus republishes a failed event to deadletter.<topic> with its key, from inside
    # the delivery; a subscription matching both has that delivery as its key's last one
    bus = EventBus(retry_policy=RetryPolicy.NONE)
    seen: list[str] = []

    @bus.subscribe("#", group="all")
    async def everything(event: Event) -> None:
        seen.append(event.type)
        if not event.type.startswith("deadletter."):
            raise RuntimeError("fails")

    async with asyncio.timeout(5):
        await bus.publish("acct.moved", 1, key="a-1")
        await eventually(lambda: len(seen) == 2)
    assert seen == ["acct.moved", "deadletter.acct.moved"]


async def test_handlers_publishing_to_each_others_key_concurrently_do_not_deadlock() -> None:
    # each handler's publish would wait for a delivery queued behind the other handler,
    # which waits for it in turn
    bus = EventBus(retry_policy=RetryPolicy.NONE)
    both_started = asyncio.Barrier(2)
    handled: list[str] = []

    @bus.subscribe("a.*", group="ga")
    async def on_a(event: Event) -> None:
        handled.append(f"a.{event.data}")
        if event.data == "first":
            await both_started.wait()
            await bus.publish("b.x", "second", key="k")

    @bus.subscribe("b.*", group="gb")
    async def on_b(event: Event) -> None:
        handled.append(f"b.{event.data}")
        if event.data == "first":
            await both_started.wait()
            await bus.publish("a.x", "second", key="k")

    async with asyncio.timeout(5):
        await asyncio.gather(
            bus.publish("a.x", "first", key="k"), bus.publish("b.x", "first", key="k")
        )
        await eventually(lambda: len(handled) == 4)
    assert sorted(handled) == ["a.first", "a.second", "b.first", "b.second"]


async def test_health_can_be_asked_from_another_thread_while_deliveries_come_and_go() -> None:
    """A probe served by another thread (prometheus_client's, say) calls health() while
    the bus's loop adds and removes deliveries: it never fails on the set changing."""
    bus = EventBus()

    @bus.subscribe("jobs.*")
    async def handle(event: Event) -> None:
        for _ in range(3):
            await asyncio.sleep(0)  # many deliveries in progress at once, all the time

    stop = threading.Event()
    seen: list[int] = []
    errors: list[BaseException] = []

    def probe() -> None:
        while not stop.is_set():
            try:
                seen.append(bus.health().in_progress)
            except BaseException as exc:  # what the old comprehension raised
                errors.append(exc)
                return

    async with bus:
        thread = threading.Thread(target=probe)
        thread.start()
        try:
            for _ in range(100):
                await asyncio.gather(*(bus.publish("jobs.run", n) for n in range(50)))
        finally:
            stop.set()
            thread.join(10)
    assert errors == [] and seen
