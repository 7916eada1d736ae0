"""NATS: a cancelled task of the transport ends, even when nats-py lost the cancellation.

nats-py waits for replies with ``asyncio.wait_for``, which on CPython 3.11 returns the
reply (or raises the request's own error) when a cancellation arrives just as the reply
does, and its ``_flush_pending`` drops a ``CancelledError`` outright. The fakes below
lose the first cancellation they see, as those calls can; the loop around them must still
end (before, it went on and ``close()``, waiting for it, never returned). Each test has a
stream and subject prefix of its own, deleted afterwards.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from pepperpy.event import Event, TransportError
from pepperpy.event.transports import Subscription
from pepperpy.event.transports.nats import NatsTransport
from pepperpy.event.transports.nats import _transport as nats_transport
from pepperpy.event.transports.nats._consumer import Consumer
from tests.bus.faultproxy import finishes
from tests.conftest import unique_name
from tests.helpers import LosesCancellation

pytestmark = pytest.mark.nats


@pytest.fixture
async def transport(nats_url: str) -> AsyncIterator[NatsTransport]:
    name = unique_name("pep_cancel")
    made = NatsTransport(
        nats_url, stream=name.upper(), prefix=name, reconnect_wait=0.05, ack_wait=3
    )
    await made.start()
    yield made
    await finishes(made.close(), 15)
    await finishes(made.delete_stream(), 15)


async def test_close_ends_a_client_replacement_whose_connect_lost_the_cancellation(
    transport: NatsTransport,
) -> None:
    """The server closed the client for good and is unreachable: close() must return."""
    connect = LosesCancellation(then=TransportError("cannot connect to NATS: refused"))
    transport._connect = connect  # type: ignore[method-assign]
    transport._replacing = asyncio.get_running_loop().create_task(transport._replace_client())
    await connect.entered.wait()
    await finishes(transport.close(), 10)  # old code: slept, connected again, for ever
    assert connect.lost == 1 and connect.calls == 1
    assert transport._replacing.cancelled()


async def test_close_ends_a_replacement_whose_connect_succeeded_as_it_was_cancelled(
    transport: NatsTransport, nats_url: str
) -> None:
    """A connect that completes despite the cancellation: the new client is closed."""
    nats = pytest.importorskip("nats")
    new_client = await nats.connect(nats_url)
    transport._connect = LosesCancellation(result=new_client)  # type: ignore[method-assign]
    task = asyncio.get_running_loop().create_task(transport._replace_client())
    await transport._connect.entered.wait()  # type: ignore[attr-defined]
    task.cancel()
    await finishes(asyncio.wait([task]), 10)
    assert task.cancelled()  # old code: returned, having installed the new client
    assert new_client.is_closed and transport._nc is not new_client


async def test_close_ends_the_keep_alive_ticker_whose_in_progress_ack_lost_the_cancellation(
    transport: NatsTransport,
) -> None:
    async def handle(event: Event) -> None:
        return None

    await transport.subscribe(Subscription("cancel.*", handle, None, "ticker"))
    consumer = next(iter(transport._consumers.values()))
    keep_alive = LosesCancellation()
    consumer.keep_alive = keep_alive  # type: ignore[method-assign]
    await keep_alive.entered.wait()  # every ack_wait / 3 = 1 s
    await finishes(transport.close(), 10)  # old code: slept and ticked on, for ever
    assert keep_alive.lost == 1 and keep_alive.calls == 1


async def test_close_ends_consumer_restoration_whose_request_lost_the_cancellation(
    transport: NatsTransport,
) -> None:
    ensure = LosesCancellation(then=TransportError("JetStream not ready"))
    transport._ensure_stream = ensure  # type: ignore[method-assign]
    transport._restoring = asyncio.get_running_loop().create_task(transport._restore_consumers())
    await ensure.entered.wait()
    await finishes(transport.close(), 10)  # old code: retried for up to 30 rounds
    assert ensure.lost == 1 and ensure.calls == 1
    assert transport._restoring.cancelled()


async def test_a_cancelled_publish_ends_cancelled_when_its_request_lost_the_cancellation(
    transport: NatsTransport, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not retried until publish_timeout, then reported as a TransportError."""
    from nats.errors import TimeoutError as NatsTimeout

    store = LosesCancellation(then=NatsTimeout())
    monkeypatch.setattr(nats_transport, "_store", store)
    publishing = asyncio.get_running_loop().create_task(
        transport.publish(Event(type="cancel.publish", source="test", data=1))
    )
    await store.entered.wait()
    publishing.cancel()
    await finishes(asyncio.wait([publishing]), 10)
    assert publishing.cancelled(), publishing.exception()  # old: TransportError after 20 s
    assert store.calls == 1


async def test_close_cancelled_while_it_waits_raises_cancelled_and_still_disconnects(
    transport: NatsTransport,
) -> None:
    """close() does not swallow its own caller's cancellation."""
    stopping = asyncio.Event()
    release = asyncio.Event()

    async def slow_to_stop() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            stopping.set()
            await release.wait()  # cancelled again by close()'s own cancellation
            raise

    transport._restoring = asyncio.get_running_loop().create_task(slow_to_stop())
    nc = transport._nc
    assert nc is not None
    closing = asyncio.get_running_loop().create_task(transport.close())
    await stopping.wait()
    closing.cancel()
    await finishes(asyncio.wait([closing]), 10)
    assert closing.cancelled()  # old code: returned normally, the cancellation lost
    assert nc.is_closed and transport._nc is None
    await finishes(transport.close(), 2)  # a later close() returns at once


async def test_a_cancelled_group_subscribe_leaves_nothing_receiving(
    transport: NatsTransport, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancelled while creating its JetStream consumers (a timeout around start(), a
    shutdown): its deliver subjects stayed subscribed, feeding a consumer the transport
    did not know of, which a later unsubscribe could not stop."""
    nc = transport._nc
    assert nc is not None
    listening = len(nc._subs)
    entered = asyncio.Event()

    async def silent_server(self: Consumer, lane: Any, **resume: Any) -> None:
        entered.set()
        await asyncio.Event().wait()

    monkeypatch.setattr(Consumer, "_create", silent_server)
    subscription = Subscription("cancel.*", _ignore, "workers", "cancelled")
    subscribing = asyncio.get_running_loop().create_task(transport.subscribe(subscription))
    await entered.wait()
    subscribing.cancel()
    await finishes(asyncio.wait([subscribing]), 10)
    assert subscribing.cancelled()
    assert transport._consumers == {}
    assert len(nc._subs) == listening  # old code: its 1 + partitions subscriptions


@pytest.mark.parametrize("group", ["workers", None])
async def test_an_unsubscribe_cancelled_while_draining_stops_listening(
    transport: NatsTransport, monkeypatch: pytest.MonkeyPatch, group: str | None
) -> None:
    """Cancelled while the server was slow to confirm a drain: the subscriptions stayed,
    receiving (a share of the group's events) for a consumer nobody would close."""
    from nats.aio.subscription import Subscription as NatsSubscription

    nc = transport._nc
    assert nc is not None
    listening = len(nc._subs)
    subscription = Subscription("cancel.*", _ignore, group, "draining")
    await transport.subscribe(subscription)
    assert len(nc._subs) > listening
    entered = asyncio.Event()

    async def slow_server(self: NatsSubscription) -> None:
        entered.set()
        await asyncio.Event().wait()

    monkeypatch.setattr(NatsSubscription, "drain", slow_server)
    subscription.mark_removed()
    unsubscribing = asyncio.get_running_loop().create_task(transport.unsubscribe(subscription))
    await entered.wait()
    unsubscribing.cancel()
    await finishes(asyncio.wait([unsubscribing]), 10)
    assert unsubscribing.cancelled()
    assert len(nc._subs) == listening  # old code: every one of them still subscribed


async def _ignore(event: Event) -> None:
    return None
