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
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from pepperpy.event import Event, EventBus, TransportError
from tests.bus.faultproxy import finishes
from tests.conftest import unique_name


async def in_cleanup_of_a_cancelled_task(cleanup: Callable[[], Awaitable[Any]]) -> Any:
    """Run ``cleanup`` in the ``finally:`` of a task that was cancelled; return what it
    returned, or the exception it raised (the task itself still ends cancelled)."""
    outcome: list[Any] = []
    waiting = asyncio.Event()

    async def worker() -> None:
        try:
            waiting.set()
            await asyncio.Event().wait()
        finally:
            try:
                outcome.append(await cleanup())
            except BaseException as exc:  # the task's cancellation propagates all the same
                outcome.append(exc)

    task = asyncio.get_running_loop().create_task(worker())
    await waiting.wait()
    task.cancel()
    await finishes(asyncio.wait([task]), 30)
    assert task.cancelled()
    [result] = outcome
    return result


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
            published = await in_cleanup_of_a_cancelled_task(
                lambda: bus.publish("worker.stopped", "bye")
            )
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
        error = await in_cleanup_of_a_cancelled_task(
            lambda: transport.publish(Event(type="worker.stopped", source="test", data=1))
        )
        assert isinstance(error, TransportError), error
        assert "JetStream refused an event" in str(error)
    finally:
        monkeypatch.undo()
        await finishes(transport.close(), 15)
        await finishes(transport.delete_stream(), 15)
