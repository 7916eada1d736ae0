"""NATS: a poison event whose dead letter cannot be published.

``close()`` sets the connection aside before it drains its consumers, so a poison event
drained then cannot be dead-lettered: publishing raises :class:`ClosedError`. That is
no failure (the event stays unacknowledged and the server delivers it again after
``ack_wait``), and it was logged as one: "could not dead-letter" at error level with a
traceback, once per such message. It is now one debug line without a traceback; any
other failure to dead-letter stays an error with its traceback.

The real stream is used; the transport's ``_publish`` is replaced so the dead letter
fails with the error under test at a known moment. Each test has a stream and subject
prefix of its own (``names``), deleted afterwards.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from pepperpy.event import ClosedError, Event, TransportError
from pepperpy.event.transports import Subscription
from pepperpy.event.transports.nats import NatsTransport
from tests.bus.faultproxy import finishes

pytestmark = pytest.mark.nats

LOGGER = "pepperpy.event.transports.nats"


@pytest.mark.parametrize(
    ("error", "level", "message", "traceback"),
    [
        (
            ClosedError("the NATS transport is closed or not started"),
            logging.DEBUG,
            "jobs.poison ({id}) not dead-lettered: the transport is closing; the server "
            "delivers it again after ack_wait",
            False,
        ),
        (
            TransportError("NATS did not acknowledge the event"),
            logging.ERROR,
            "could not dead-letter jobs.poison ({id})",
            True,
        ),
    ],
    ids=["closing", "other-failure"],
)
async def test_a_dead_letter_that_cannot_be_published_is_logged_by_its_cause(
    nats_url: str,
    names: dict[str, str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    error: Exception,
    level: int,
    message: str,
    traceback: bool,
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    transport = NatsTransport(nats_url, max_deliver=1, **names)
    tried = asyncio.Event()

    async def publish(subject: str, payload: bytes, msg_id: str) -> None:
        tried.set()
        raise error

    async def fail(event: Event) -> None:  # nak: delivered again at once, the 2nd time
        raise RuntimeError("handler failed")

    await transport.start()
    try:
        await transport.subscribe(Subscription("jobs.*", fail, "workers", "poison"))
        sent = Event("jobs.poison", {"n": 1})
        await transport.publish(sent)
        monkeypatch.setattr(transport, "_publish", publish)  # the dead letter's, from now
        await asyncio.wait_for(tried.wait(), 15)  # the 2nd delivery: over max_deliver
    finally:
        await finishes(transport.close(), 15)
    dead_letter_logs = [
        r
        for r in caplog.records
        if r.name == LOGGER and "dead-letter" in r.getMessage() and sent.id in r.getMessage()
    ]
    assert dead_letter_logs, "the dead-letter path was not taken"
    assert {(r.levelno, r.getMessage()) for r in dead_letter_logs} == {
        (level, message.format(id=sent.id))
    }
    assert all((r.exc_info is not None) is traceback for r in dead_letter_logs)
