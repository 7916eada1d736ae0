"""Transport calls made in the cleanup of a cancelled task work as in any other task.

A task keeps counting a cancellation it was told of (``Task.cancelling()`` stays 1) while
it cleans up after it: in ``finally:``, ``except CancelledError:``, an ``async with``
exit. That is where a program publishes a last "stopped" event or closes its transport.
The transports took that count for a cancellation of the call itself: a NATS publish
raised ``CancelledError`` at its first retryable failure instead of retrying, a RabbitMQ
``close()`` raised at once (taking its own rebalancer's cancellation for the caller's)
without waiting for the handler in progress or closing its channels, and a lost
connection's ``CancelledError`` (which aiormq raises) passed for the caller's, so
``quietly`` and a RabbitMQ publish raised it instead of going on. Now only a
cancellation that comes during the call counts. Each service test uses a stream or
exchange of its own, deleted afterwards.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from pepperpy.event import Event, EventBus, TransportError
from pepperpy.event.transports.base import quietly
from tests.bus.faultproxy import finishes
from tests.conftest import unique_name
from tests.helpers import eventually, in_cleanup

LOGGER = logging.getLogger("test_cancelled_callers")


# -- quietly (every transport's close paths) ---------------------------------------------


async def test_quietly_in_cleanup_swallows_a_lost_connections_cancellation() -> None:
    async def lost_connection() -> None:
        raise asyncio.CancelledError  # as aiormq fails the futures of a dead connection

    async def close() -> bool:
        return await quietly(lost_connection(), "closing", LOGGER, deadline=None)

    # old code: the CancelledError passed for the caller's and the close stopped there
    assert await in_cleanup("finally", close) is False


async def test_quietly_in_cleanup_still_ends_when_its_caller_is_cancelled_again() -> None:
    waiting, entered = asyncio.Event(), asyncio.Event()
    outcome: list[BaseException] = []

    async def silent_broker() -> None:
        entered.set()
        await asyncio.Event().wait()

    async def worker() -> None:
        try:
            waiting.set()
            await asyncio.Event().wait()
        finally:
            try:
                await quietly(silent_broker(), "closing", LOGGER, deadline=None)
            except BaseException as exc:
                outcome.append(exc)
                raise

    task = asyncio.get_running_loop().create_task(worker())
    await waiting.wait()
    task.cancel()
    await entered.wait()
    task.cancel()  # a second cancellation, while the cleanup waits for the broker
    await finishes(asyncio.wait([task]), 10)
    assert task.cancelled()
    assert [type(exc) for exc in outcome] == [asyncio.CancelledError]


# -- NATS ----------------------------------------------------------------------------------


@pytest.mark.nats
async def test_a_nats_publish_in_cleanup_retries_a_momentary_failure(
    nats_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One NoRespondersError (a JetStream leader change). Before, the publish raised
    # CancelledError at once and the event was lost; a task not cancelled retried.
    from nats.errors import NoRespondersError

    from pepperpy.event.transports.nats import NatsTransport
    from pepperpy.event.transports.nats import _transport as nats_transport

    name = unique_name("pep_cleanup")
    transport = NatsTransport(nats_url, stream=name.upper(), prefix=name)
    bus = EventBus(transport=transport)
    received = asyncio.Event()

    @bus.subscribe("worker.*")
    def stopped(event: Event) -> None:
        if event.data == "bye":
            received.set()

    real, calls = nats_transport._store, []

    async def flaky(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise NoRespondersError
        return await real(*args, **kwargs)

    try:
        async with asyncio.timeout(30):
            await bus.start()
            monkeypatch.setattr(nats_transport, "_store", flaky)
            published = await in_cleanup("finally", lambda: bus.publish("worker.stopped", "bye"))
            assert isinstance(published, Event), published
            assert len(calls) == 2
            await received.wait()
    finally:
        monkeypatch.undo()
        await finishes(bus.close(), 15)
        await finishes(NatsTransport(nats_url, stream=name.upper()).delete_stream(), 15)


@pytest.mark.nats
async def test_a_nats_publish_in_cleanup_reports_a_refusal_as_transport_error(
    nats_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Before, a CancelledError came out instead of the TransportError saying why.
    from pepperpy.event.transports.nats import NatsTransport
    from pepperpy.event.transports.nats import _transport as nats_transport

    name = unique_name("pep_cleanup")
    transport = NatsTransport(nats_url, stream=name.upper(), prefix=name)

    async def refused(*args: Any, **kwargs: Any) -> Any:
        raise ValueError("no such stream")

    try:
        await finishes(transport.start(), 15)
        monkeypatch.setattr(nats_transport, "_store", refused)
        error = await in_cleanup(
            "finally",
            lambda: transport.publish(Event(type="worker.stopped", source="test", data=1)),
        )
        assert isinstance(error, TransportError), error
        assert "JetStream refused an event" in str(error)
    finally:
        monkeypatch.undo()
        await finishes(transport.close(), 15)
        await finishes(transport.delete_stream(), 15)


# -- RabbitMQ ------------------------------------------------------------------------------


@pytest.mark.rabbitmq
async def test_a_rabbitmq_close_in_cleanup_waits_for_the_handler_and_closes_channels(
    amqp_url: str,
) -> None:
    # close() called directly in the finally of a cancelled task. Before, it raised
    # CancelledError from stop_rebalancing() at once: the handler in progress was not
    # waited for and the consumers' channels stayed open.
    from pepperpy.event.transports.rabbitmq import RabbitMQTransport

    transport = RabbitMQTransport(
        amqp_url, exchange=unique_name("pep.cleanup"), partitions=2, queue_type="classic"
    )
    bus = EventBus(transport=transport)
    started, gate = asyncio.Event(), asyncio.Event()
    state: list[str] = []

    @bus.subscribe("o.*", group="g")
    async def handle(event: Event) -> None:
        started.set()
        await gate.wait()
        state.append("finished")

    try:
        async with asyncio.timeout(30):
            await bus.start()
            await bus.publish("o.x", 1)
            await started.wait()
            [group] = transport._groups.values()
            consumers = list(group.consumers)
            assert group._rebalancer is not None

            async def finish_the_handler() -> None:
                await eventually(lambda: group._rebalancer is None)  # close() stops it
                gate.set()  # the handler finishes only now, while close() runs

            async def close() -> list[str]:
                finishing = asyncio.ensure_future(finish_the_handler())
                await transport.close()  # in the cancelled task itself
                await finishing
                return list(state)

            finished_when_closed = await in_cleanup("finally", close)
            assert finished_when_closed == ["finished"], finished_when_closed
            assert all(consumer._channel is None for consumer in consumers)
    finally:
        gate.set()
        await finishes(bus.close(), 15)
        await finishes(transport.delete_topology(), 15)


@pytest.mark.rabbitmq
async def test_a_rabbitmq_publish_in_cleanup_sends_again_after_a_lost_confirmation(
    amqp_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # aiormq fails the confirmation of a connection that died with CancelledError. In
    # a task not cancelled the publish waits for the connection and sends again; in the
    # cleanup of a cancelled one it raised that CancelledError, and the event was lost.
    from pepperpy.event.transports.rabbitmq import RabbitMQTransport

    transport = RabbitMQTransport(amqp_url, exchange=unique_name("pep.cleanup"))
    bus = EventBus(transport=transport)
    received = asyncio.Event()

    @bus.subscribe("worker.*")
    def stopped(event: Event) -> None:
        if event.data == "bye":
            received.set()

    try:
        async with asyncio.timeout(30):
            await bus.start()
            assert transport._publisher is not None
            underlay = await transport._publisher.get_underlay_channel()
            real, calls = underlay.basic_publish, []

            async def confirmation_lost(*args: Any, **kwargs: Any) -> Any:
                calls.append(1)
                if len(calls) == 1:
                    raise asyncio.CancelledError
                return await real(*args, **kwargs)

            monkeypatch.setattr(underlay, "basic_publish", confirmation_lost)
            published = await in_cleanup("finally", lambda: bus.publish("worker.stopped", "bye"))
            assert isinstance(published, Event), published
            assert len(calls) == 2
            await received.wait()
    finally:
        monkeypatch.undo()
        await finishes(bus.close(), 15)
        await finishes(transport.delete_topology(), 15)
