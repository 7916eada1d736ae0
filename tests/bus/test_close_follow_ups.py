"""A handler still running when close() (or serve()'s shutdown) begins may publish.

close() finishes the deliveries in progress; a handler among them that publishes its
follow-up event (order -> payment) had that publish refused with ClosedError: the
handler failed every retry, its event was dead-lettered and, on a broker, acknowledged,
so the follow-up was lost on every rolling deploy (audit 13, finding 1). Publishes from
the bus's own deliveries in progress now go through until the transport has closed;
any other publish on a closing bus is refused as before. The Redis and NATS transports
refused them themselves once their close() began (NATS dropped its client before its
consumers finished, so even the dead letter failed); they now take publishes until their
consumers' handlers finished, then refuse new ones and wait for those under way.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pepperpy.event import ClosedError, DeadLetter, EventBus, RetryPolicy


async def follow_up_during_close(bus: EventBus, many: bool) -> list[Any]:
    """Close ``bus`` while a handler is in progress, which then publishes its follow-up
    (with ``publish_many`` if ``many``); returns what the bus delivered of it."""
    started, go_on = asyncio.Event(), asyncio.Event()
    refused: list[str] = []
    follow_ups: list[Any] = []
    dead: list[DeadLetter] = []
    bus.on_error(dead.append)

    @bus.subscribe("orders.placed", group="billing")
    async def bill(event: Any) -> None:
        started.set()
        await go_on.wait()  # the work; close() begins meanwhile
        try:
            if many:
                await bus.publish_many("payments.requested", [event.data])
            else:
                await bus.publish("payments.requested", event.data)
        except Exception as exc:
            refused.append(f"{type(exc).__name__}: {exc}")
            raise

    bus.subscribe("payments.requested", follow_ups.append, group="payments")
    await bus.start()
    publishing = asyncio.create_task(bus.publish("orders.placed", {"order": 1}))
    async with asyncio.timeout(30):
        await started.wait()
        closing = asyncio.create_task(bus.close())
        await asyncio.sleep(0)
        assert bus._closed and not closing.done()
        with pytest.raises(ClosedError):  # from outside the bus's deliveries: refused
            await bus.publish("payments.requested", {"order": "outside"})
        with pytest.raises(ClosedError):
            await bus.publish_many("payments.requested", [{"order": "outside"}])
        await closing_gets_on(closing)
        go_on.set()
        await closing
        await publishing
    assert refused == []
    assert dead == []
    with pytest.raises(ClosedError):  # closed: refused from anywhere
        await bus.publish("payments.requested", {"order": 2})
    return follow_ups


async def closing_gets_on(closing: asyncio.Task[None]) -> None:
    """Let ``closing`` (the bus's close()) get on to waiting for the handlers: a NATS
    transport dropped its client only after a few turns of the event loop."""
    await asyncio.sleep(0.2)
    assert not closing.done()


MANY = pytest.mark.parametrize("many", [False, True], ids=["publish", "publish_many"])


@MANY
async def test_a_handler_finishing_during_close_publishes_its_follow_up(many: bool) -> None:
    bus = EventBus(retry_policy=RetryPolicy.fixed(2, base_delay=0))
    follow_ups = await follow_up_during_close(bus, many)
    assert [e.data for e in follow_ups] == [{"order": 1}]


async def stored_on_redis(client: Any, namespace: str) -> list[str]:
    """The topics of the events in the namespace's streams."""
    stored: list[str] = []
    async for stream in client.scan_iter(match=f"{namespace}:stream:*"):
        for _, fields in await client.xrange(stream):
            body = b" ".join(v for v in fields.values() if isinstance(v, bytes))
            stored += [t for t in ("orders.placed", "payments.requested") if t.encode() in body]
    return sorted(stored)


async def stored_on_nats(url: str, stream: str) -> list[str]:
    """The topics of the events in ``stream`` (kept: ``retention="limits"``)."""
    import nats

    nc = await nats.connect(url)
    try:
        info = await nc.jetstream().stream_info(stream, subjects_filter=">")
    finally:
        await nc.close()
    stored: list[str] = []
    for subject, count in (info.state.subjects or {}).items():
        stored += [
            t for t in ("orders.placed", "payments.requested") if subject.endswith(t)
        ] * count
    return sorted(stored)


@pytest.mark.redis
@MANY
async def test_a_handler_finishing_during_close_publishes_its_follow_up_on_redis(
    many: bool, redis_url: str, namespace: str, client: Any
) -> None:
    from pepperpy.event.transports.redis import RedisTransport

    transport = RedisTransport(redis_url, namespace=namespace, trim_interval=None)
    bus = EventBus(transport=transport, retry_policy=RetryPolicy.fixed(2, base_delay=0))
    try:
        await follow_up_during_close(bus, many)
        # stored, for the payments group to read once a worker runs again
        assert await stored_on_redis(client, namespace) == ["orders.placed", "payments.requested"]
    finally:
        await bus.close()
        await transport.delete_topology()


@pytest.mark.nats
@MANY
async def test_a_handler_finishing_during_close_publishes_its_follow_up_on_nats(
    many: bool, nats_url: str, names: dict[str, str]
) -> None:
    from pepperpy.event.transports.nats import NatsTransport

    transport = NatsTransport(nats_url, retention="limits", **names)
    bus = EventBus(transport=transport, retry_policy=RetryPolicy.fixed(2, base_delay=0))
    try:
        await follow_up_during_close(bus, many)
        stored = await stored_on_nats(nats_url, names["stream"])
        assert stored == ["orders.placed", "payments.requested"]
    finally:
        await bus.close()


async def follow_up_during_serve_shutdown(bus: EventBus) -> list[DeadLetter]:
    """Shut ``serve()`` down while a handler is in progress, which then publishes its
    follow-up; returns the dead letters the bus reported (none expected)."""
    started, go_on = asyncio.Event(), asyncio.Event()
    refused: list[str] = []
    dead: list[DeadLetter] = []
    bus.on_error(dead.append)

    @bus.subscribe("orders.placed", group="billing")
    async def bill(event: Any) -> None:
        started.set()
        await go_on.wait()
        try:
            await bus.publish("payments.requested", event.data)
        except Exception as exc:
            refused.append(f"{type(exc).__name__}: {exc}")
            raise

    serving = asyncio.create_task(bus.serve(signals=()))
    async with asyncio.timeout(30):
        await bus.start()
        publishing = asyncio.create_task(bus.publish("orders.placed", 7))
        await started.wait()
        closing = asyncio.create_task(bus.close())  # what SIGTERM does in serve()
        await asyncio.sleep(0)
        await closing_gets_on(closing)
        go_on.set()
        await asyncio.gather(closing, publishing, serving)
    assert refused == []
    return dead


@pytest.mark.redis
async def test_a_handler_finishing_during_the_serve_shutdown_publishes_on_redis(
    redis_url: str, namespace: str, client: Any
) -> None:
    from pepperpy.event.transports.redis import RedisTransport

    transport = RedisTransport(redis_url, namespace=namespace, trim_interval=None)
    bus = EventBus(transport=transport, retry_policy=RetryPolicy.fixed(2, base_delay=0))
    try:
        assert await follow_up_during_serve_shutdown(bus) == []
        assert await stored_on_redis(client, namespace) == ["orders.placed", "payments.requested"]
    finally:
        await bus.close()
        await transport.delete_topology()


@pytest.mark.nats
async def test_a_handler_finishing_during_the_serve_shutdown_publishes_on_nats(
    nats_url: str, names: dict[str, str]
) -> None:
    from pepperpy.event.transports.nats import NatsTransport

    transport = NatsTransport(nats_url, retention="limits", **names)
    bus = EventBus(transport=transport, retry_policy=RetryPolicy.fixed(2, base_delay=0))
    try:
        assert await follow_up_during_serve_shutdown(bus) == []
        stored = await stored_on_nats(nats_url, names["stream"])
        assert stored == ["orders.placed", "payments.requested"]
    finally:
        await bus.close()


async def test_a_handler_finishing_during_the_serve_shutdown_publishes_its_follow_up() -> None:
    bus = EventBus(retry_policy=RetryPolicy.fixed(2, base_delay=0))
    started, go_on = asyncio.Event(), asyncio.Event()
    follow_ups: list[Any] = []
    dead: list[DeadLetter] = []
    bus.on_error(dead.append)

    @bus.subscribe("orders.placed")
    async def bill(event: Any) -> None:
        started.set()
        await go_on.wait()
        await bus.publish("payments.requested", event.data)

    bus.subscribe("payments.requested", follow_ups.append)
    serving = asyncio.create_task(bus.serve(signals=()))
    async with asyncio.timeout(30):
        await bus.start()
        publishing = asyncio.create_task(bus.publish("orders.placed", 7))
        await started.wait()
        closing = asyncio.create_task(bus.close())  # what SIGTERM does in serve()
        await asyncio.sleep(0)
        go_on.set()
        await asyncio.gather(closing, publishing, serving)
    assert dead == []
    assert [e.data for e in follow_ups] == [7]


async def test_a_task_a_handler_left_behind_cannot_publish_on_the_closing_bus() -> None:
    """Only deliveries in progress may publish while the bus closes: a task a handler
    started and left running is not one of them once that handler returned."""
    bus = EventBus()
    holding, release, go_on = asyncio.Event(), asyncio.Event(), asyncio.Event()
    outcome: list[str] = []
    left_behind: list[asyncio.Task[None]] = []

    async def later() -> None:
        await go_on.wait()
        try:
            await bus.publish("payments.requested", 1)
            outcome.append("published")
        except ClosedError:
            outcome.append("refused")

    @bus.subscribe("orders.placed")
    async def bill(event: Any) -> None:
        left_behind.append(asyncio.create_task(later()))

    @bus.subscribe("orders.held")
    async def hold(event: Any) -> None:  # keeps the bus closing
        holding.set()
        await release.wait()

    await bus.start()
    await bus.publish("orders.placed", 1)  # bill returned; its task waits
    async with asyncio.timeout(10):
        held = asyncio.create_task(bus.publish("orders.held", 1))
        await holding.wait()
        closing = asyncio.create_task(bus.close())
        await asyncio.sleep(0)
        go_on.set()
        await left_behind[0]
        assert not closing.done()  # still closing: hold is in progress
        release.set()
        await asyncio.gather(closing, held)
    assert outcome == ["refused"]
