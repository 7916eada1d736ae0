"""Redis: close() with publishes under way leaves no connection behind.

Audit 13, finding 3: close() closed the client under the publishes in flight, cutting
their XADD replies; each then looked for its event on a new connection of the same
client (CLIENT KILL, XRANGE), opened after close() had returned and never closed. Now
close() waits for them (within connect_timeout) before it closes the client, they make
no new attempt once it began, and a publish made after it began raises ClosedError with
``stored`` False.

Audit 13, finding 1: that refusal came as soon as close() began, so the handlers close()
waits for could not publish their follow-up events (nor their dead letters). Publishes
now go through until those handlers finished; then they are refused, and close() waits
for those under way as above. A cancelled close() refuses them at once.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pepperpy.event import ClosedError, Event, EventBus
from pepperpy.event.transports import Subscription
from pepperpy.event.transports.redis import RedisTransport
from tests.bus.closing import publish_while_close_waits

pytestmark = pytest.mark.redis


async def connections_named(client: Any, name: str) -> list[str]:
    """The last command of each connection Redis has with the client name ``name``."""
    return [c.get("cmd") for c in await client.client_list() if c.get("name") == name]


async def test_close_waits_for_publishes_under_way_and_leaves_no_connection(
    redis_url: str, namespace: str, client: Any
) -> None:
    transport = RedisTransport(
        f"{redis_url}?client_name={namespace}", namespace=namespace, trim_interval=None
    )
    bus = EventBus(transport=transport)
    await bus.start()
    closed = False
    after_close = 0

    async def publish(n: int) -> None:
        nonlocal after_close
        await bus.publish("closing.x", {"n": n})
        if closed:
            after_close += 1

    publishes = [asyncio.create_task(publish(n)) for n in range(200)]
    await asyncio.sleep(0)  # the publishes are under way
    async with asyncio.timeout(30):
        await bus.close()
        closed = True
        outcomes = await asyncio.gather(*publishes, return_exceptions=True)
    # Redis drops a closed connection from CLIENT LIST within moments; the old code left
    # one (its last command an XRANGE) open for as long as the process lived
    left = await connections_named(client, namespace)
    for _ in range(50):
        if not left:
            break
        await asyncio.sleep(0.1)
        left = await connections_named(client, namespace)
    assert left == []
    assert [o for o in outcomes if o is not None] == []
    assert after_close == 0  # every one had returned before close() did
    assert sum([await client.xlen(f"{namespace}:stream:{p}") for p in range(16)]) == 200


async def test_a_publish_after_close_began_is_a_closed_error_with_nothing_stored(
    redis_url: str, namespace: str, client: Any
) -> None:
    transport = RedisTransport(redis_url, namespace=namespace, trim_interval=None)
    await transport.start()
    under_way = asyncio.create_task(transport.publish(Event("closing.y", {"n": 0})))
    await asyncio.sleep(0)  # its XADD is out
    closing = asyncio.create_task(transport.close())
    await asyncio.sleep(0)  # close() began, and waits for the publish under way
    assert not closing.done()
    with pytest.raises(ClosedError, match="cannot publish 'closing.y'") as raised:
        await transport.publish(Event("closing.y", {"n": 1}))
    assert getattr(raised.value, "stored", "missing") is False
    async with asyncio.timeout(20):
        await closing
    assert under_way.done() and under_way.exception() is None
    assert sum([await client.xlen(f"{namespace}:stream:{p}") for p in range(16)]) == 1


async def test_close_during_a_silent_redis_makes_no_new_attempt_and_leaves_nothing_open(
    redis_through_proxy: Any, proxy: Any
) -> None:
    """Redis goes silent with a publish under way: close() waits for it (within
    connect_timeout), the publish gives up at its deadline without looking for its event
    again (that would open a connection after close()), and nothing stays connected."""
    transport: RedisTransport = redis_through_proxy(connect_timeout=2.0)
    await transport.start()
    proxy.pause()
    under_way = asyncio.create_task(transport.publish(Event("closing.z", {"n": 0})))
    await asyncio.sleep(0.2)  # its XADD is out, held by the partition
    async with asyncio.timeout(20):
        await transport.close()
        assert under_way.done()  # close() waited for it
        proxy.resume()
        error = under_way.exception()
        assert error is not None and getattr(error, "stored", "missing") is None
        for _ in range(50):
            if not proxy.open_connections:
                break
            await asyncio.sleep(0.1)
    assert proxy.open_connections == 0


async def test_a_handler_publishes_while_close_waits_for_it_and_nothing_stays_open(
    redis_url: str, namespace: str, client: Any
) -> None:
    transport = RedisTransport(
        f"{redis_url}?client_name={namespace}", namespace=namespace, trim_interval=None
    )
    try:
        await publish_while_close_waits(transport)
        left = await connections_named(client, namespace)
        for _ in range(50):
            if not left:
                break
            await asyncio.sleep(0.1)
            left = await connections_named(client, namespace)
        assert left == []
        assert sum([await client.xlen(f"{namespace}:stream:{p}") for p in range(16)]) == 2
    finally:
        await transport.close()
        await transport.delete_topology()


async def test_a_cancelled_close_refuses_publishes_at_once_and_closes_the_client(
    redis_url: str, namespace: str, client: Any
) -> None:
    transport = RedisTransport(
        f"{redis_url}?client_name={namespace}", namespace=namespace, trim_interval=None
    )
    started, go_on = asyncio.Event(), asyncio.Event()

    async def hold(event: Event) -> None:
        started.set()
        await go_on.wait()

    await transport.start()
    try:
        await transport.subscribe(Subscription("orders.*", hold, "holders", "hold"))
        await transport.publish(Event("orders.placed", {"order": 1}))
        async with asyncio.timeout(30):
            await started.wait()
            closing = asyncio.create_task(transport.close())
            await asyncio.sleep(0.2)  # close() waits for hold
            closing.cancel()
            with pytest.raises(asyncio.CancelledError):
                await closing
            with pytest.raises(ClosedError) as raised:
                await transport.publish(Event("payments.requested", {"order": 1}))
            assert raised.value.stored is False
            go_on.set()  # hold ends, is acknowledged; then the client closes
            assert transport._finishing is not None
            await transport._finishing
        stream = transport.stream_for("orders.placed")
        assert (await client.xpending(stream, "holders:orders.*"))["pending"] == 0
        # the worker's reader closed as it ended, the client after it
        left = await connections_named(client, namespace)
        for _ in range(50):
            if not left:
                break
            await asyncio.sleep(0.1)
            left = await connections_named(client, namespace)
        assert left == []
    finally:
        go_on.set()
        await transport.close()
        await transport.delete_topology()
