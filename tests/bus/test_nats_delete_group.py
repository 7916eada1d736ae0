"""Retiring a group on NATS JetStream: its durable consumers go, and with them what the
stream kept for it; a member still running elsewhere (docs/transport-nats.md, "Retiring
a group")."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from pepperpy.event import Event, EventBus
from pepperpy.event.transports.nats import NatsTransport
from tests.helpers import eventually, settle

pytestmark = pytest.mark.nats


async def _consumers(js: Any, stream: str) -> list[str]:
    return sorted(info.name for info in await js.consumers_info(stream))


async def _until(condition: Callable[[], Any], what: str, timeout: float = 10.0) -> None:
    """Wait until the awaitable ``condition()`` returns something true."""
    for _ in range(int(timeout / 0.05)):
        if await condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what} within {timeout}s")


async def test_a_deleted_group_has_no_consumer_left_and_the_stream_drops_its_backlog(
    nats_url: str, nats_namespace: dict[str, str], nats_jetstream: Any
) -> None:
    """With interest retention the stream kept every event for the group, member or not."""
    stream = nats_namespace["stream"]
    left = EventBus(transport=NatsTransport(nats_url, partitions=2, **nats_namespace))

    async def billing(event: Event) -> None:
        pass

    left.subscribe("orders.*", group="billing")(billing)
    await left.start()
    assert await left.unsubscribe("orders.*", billing, group="billing") is True
    for n in range(10):  # keyed and unkeyed: every consumer of the group holds some
        await left.publish("orders.placed", n, key=f"k{n}" if n % 2 else None)
    await left.close()
    names = await _consumers(nats_jetstream, stream)
    assert len(names) == 3, names  # unkeyed events, and one per key lane
    assert (await nats_jetstream.stream_info(stream)).state.messages == 10

    bus = EventBus(transport=NatsTransport(nats_url, partitions=2, **nats_namespace))
    await bus.delete_group("orders.*", "billing")
    from nats.js.errors import NotFoundError

    for name in names:
        with pytest.raises(NotFoundError):
            await nats_jetstream.consumer_info(stream, name)

    async def emptied() -> bool:
        return bool((await nats_jetstream.stream_info(stream)).state.messages == 0)

    await _until(emptied, "the stream kept the deleted group's events")
    await bus.close()


async def test_a_member_still_running_elsewhere_gets_nothing_until_it_reconnects(
    nats_url: str, names: dict[str, str], proxy: Any, through_proxy: Callable[..., Any]
) -> None:
    """Nothing tells it its consumers went; a reconnect finds them gone and makes them
    anew (as for consumers a restarted server lost), from then on."""
    import nats

    running = EventBus(transport=through_proxy(partitions=2))
    got: list[int] = []
    running.subscribe("orders.*", group="billing")(lambda e: got.append(e.data))
    deleting = EventBus(transport=NatsTransport(nats_url, partitions=2, **names))
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    try:
        async with running, deleting:
            await deleting.publish("orders.placed", 0)
            await eventually(lambda: got == [0])
            await deleting.delete_group("orders.*", "billing")
            for n in range(1, 6):
                await deleting.publish("orders.placed", n, key=f"k{n}" if n % 2 else None)
            await settle(1.0)
            assert got == [0], "a member got events of a deleted group"
            assert await _consumers(js, names["stream"]) == []  # not made anew meanwhile
            assert proxy.drop() > 0

            async def remade() -> bool:
                return len(await _consumers(js, names["stream"])) == 3

            await _until(remade, "the member did not make its consumers anew")
            for n in range(6, 11):
                await deleting.publish("orders.placed", n, key=f"k{n}" if n % 2 else None)
            await eventually(lambda: set(range(6, 11)) <= set(got), timeout=15)
            await settle(0.3)
            # interest retention: what came while no consumer wanted it is gone
            assert sorted(got) == [0, *range(6, 11)]
    finally:
        await nc.close()
