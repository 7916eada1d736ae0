"""RabbitMQ: how a lost connection is restored, and what it logs.

* A group's member count (a passive declare of its auto-delete presence queue) that came
  while the robust connection restored the group's control channel, before that channel
  had declared the presence queue again, got the broker's 404 on that channel: the
  restore failed, aio-pika dropped the connection and reconnected, and the next restore
  could fail the same way (soak audit F5: 12 failed restores in 6 minutes, 5 with no
  fault, each returning every partition's prefetched messages). The count now asks on
  the transport's probe channel, whose 404 harms nothing.
* A lost connection logged one aio-pika ERROR per robust channel (their immediate
  reopen fails on the dead connection; the robust connection reopens them) and nothing of
  ours (F6). It now logs one WARNING when the connection is lost and one INFO when it is
  back, and those aio-pika records are DEBUG.

Connections go through the fault proxy; every test uses an exchange of its own and
deletes what it declared (``through_proxy``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import aio_pika
import aiormq
import pytest
from aio_pika.tools import OneShotCallback

from pepperpy.event import EventBus
from pepperpy.event.transports.rabbitmq import RabbitMQTransport
from pepperpy.event.transports.rabbitmq._config import PRESENCE
from pepperpy.event.transports.rabbitmq._quiet_reopens import (
    CALLBACK_FAILED,
    CALLBACK_LOGGER,
    quiet_channel_reopens,
)
from tests.bus.faultproxy import FaultProxy
from tests.faultproxy import Link
from tests.helpers import eventually

pytestmark = pytest.mark.rabbitmq

LOGGER = "pepperpy.event.transports.rabbitmq"
#: an AMQP exchange.declare method frame's class and method ids (40, 10)
EXCHANGE_DECLARE = b"\x00\x28\x00\x0a"


def records(caplog: pytest.LogCaptureFixture, name: str, level: int) -> list[logging.LogRecord]:
    """(Unrendered: aio-pika's records of failed callbacks can only be rendered at once.)"""
    return [r for r in caplog.records if r.name == name and r.levelno == level]


def messages(caplog: pytest.LogCaptureFixture, name: str, level: int) -> list[str]:
    return [r.getMessage() for r in records(caplog, name, level)]


async def test_a_member_count_during_the_restore_does_not_fail_it(
    proxy: FaultProxy,
    through_proxy: Callable[..., RabbitMQTransport],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every restore of the group's control channel is held up (its connection goes
    silent at the group's lanes exchange) until a member count was sent meanwhile."""
    caplog.set_level(logging.DEBUG, logger="aio_pika.robust_connection")
    asked = asyncio.Event()  # a member count was sent on a live channel
    counts: list[int] = []  # what the member counts answered
    real_declare = aiormq.Channel.queue_declare

    async def queue_declare(self: aiormq.Channel, queue: str = "", **kwargs: Any) -> Any:
        if not (kwargs.get("passive") and queue.endswith(PRESENCE)):
            return await real_declare(self, queue, **kwargs)
        if not self.is_closed:
            asked.set()
        answer = await real_declare(self, queue, **kwargs)
        counts.append(answer.consumer_count)
        return answer

    monkeypatch.setattr(aiormq.Channel, "queue_declare", queue_declare)
    transport = through_proxy(partitions=2, queue_type="classic", rebalance_interval=0.05)
    got: list[int] = []
    bus = EventBus(transport=transport)
    bus.subscribe("jobs.*", group="workers")(lambda event: got.append(event.data))
    resuming: set[asyncio.Task[None]] = set()

    async def resume_once_asked(link: Link) -> None:
        # the fixed count opens its probe channel first, which waits for the link: the
        # link resumes after 2 s then (the old count's passive declare was sent at once)
        try:
            await asyncio.wait_for(asked.wait(), 2)
        except TimeoutError:
            pass
        link.resume()

    async with bus:
        [group] = transport._groups.values()
        lanes = f"{group.base}.lanes".encode()
        first = proxy.accepted

        def slow_restore(link: Link, data: bytes) -> None:
            if link.number > first and lanes in data and EXCHANGE_DECLARE in data:
                link.pause()
                asked.clear()
                counts.clear()
                resuming.add(asyncio.ensure_future(resume_once_asked(link)))

        proxy.on_client = slow_restore
        try:
            proxy.drop()
            await eventually(lambda: bool(resuming))  # the restore was held up
            # restored: the presence queue is back with our consumer on it (before the
            # fix, every restore failed before it, and reconnected)
            await eventually(lambda: any(count >= 1 for count in counts), timeout=20)
            assert proxy.accepted == first + 1  # one reconnection
            await bus.publish("jobs.run", 1)
            await eventually(lambda: got == [1])
            # the rebalancer counts on (every 0.05 s): no reconnection follows
            seen = len(counts)
            await eventually(lambda: len(counts) >= seen + 5)
            assert proxy.accepted == first + 1
        finally:
            proxy.on_client = None
            for task in resuming:
                task.cancel()
            await asyncio.gather(*resuming, return_exceptions=True)
    # a failed restore's record (a WARNING, DEBUG during an outage the transport logs)
    attempts = [r.getMessage() for r in caplog.records if r.name == "aio_pika.robust_connection"]
    assert not [m for m in attempts if "NOT_FOUND" in m]


async def test_a_lost_connection_logs_a_warning_then_an_info_and_no_errors(
    proxy: FaultProxy,
    through_proxy: Callable[..., RabbitMQTransport],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Once per outage, however many reconnection attempts fail meanwhile."""
    caplog.set_level(logging.INFO)
    transport = through_proxy(partitions=2, queue_type="classic")
    got: list[int] = []
    bus = EventBus(transport=transport)
    bus.subscribe("jobs.*", group="workers")(lambda event: got.append(event.data))
    bus.subscribe("jobs.*")(lambda event: got.append(event.data))

    async def outage(n: int) -> None:
        attempts = proxy.accepted
        proxy.refuse()
        proxy.drop()
        await eventually(lambda: proxy.accepted >= attempts + 2)  # 2 attempts refused
        proxy.heal()
        await eventually(lambda: len(records(caplog, LOGGER, logging.INFO)) == n)
        await bus.publish("jobs.run", n)
        await eventually(lambda: got.count(n) == 2)  # both consume again

    async with bus:
        await outage(1)
        await outage(2)
    warnings = messages(caplog, LOGGER, logging.WARNING)
    infos = messages(caplog, LOGGER, logging.INFO)
    assert len(warnings) == 2, warnings
    assert all("lost the connection to RabbitMQ" in w for w in warnings)
    assert "guest:***@" in warnings[0]  # the password is not logged
    assert len(infos) == 2 and all("is back after" in i for i in infos), infos
    errors = [(r.name, r.msg) for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == []


async def test_the_channel_reopen_errors_are_debug_records(
    proxy: FaultProxy,
    through_proxy: Callable[..., RabbitMQTransport],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger=CALLBACK_LOGGER)
    transport = through_proxy(partitions=2, queue_type="classic")
    bus = EventBus(transport=transport)
    bus.subscribe("jobs.*", group="workers")(lambda event: None)
    async with bus:
        proxy.drop()
        await bus.publish("jobs.run", 1)  # waits for the reconnection
    assert [(r.name, r.msg) for r in caplog.records if r.levelno >= logging.ERROR] == []
    demoted = messages(caplog, CALLBACK_LOGGER, logging.DEBUG)
    assert [m for m in demoted if "RobustChannel._on_close" in m and "connection is away" in m]


async def test_other_channel_reopen_errors_stay_errors(
    amqp_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Only a connection of ours that is away: its channels reopen with it."""
    caplog.set_level(logging.INFO)
    exc = RuntimeError("connection closed")
    ours = aio_pika.RobustConnection(aio_pika.connection.make_url(amqp_url))
    theirs = aio_pika.RobustConnection(aio_pika.connection.make_url(amqp_url))
    quiet_channel_reopens(ours)
    log = logging.getLogger(CALLBACK_LOGGER)
    for connection in (ours, theirs):  # neither connected
        channel = aio_pika.RobustChannel(connection)
        log.error(CALLBACK_FAILED, OneShotCallback(channel._on_close), "RuntimeError", exc)
    ours.connected.set()  # up: a reopen that failed while it is, failed for a reason
    channel = aio_pika.RobustChannel(ours)
    log.error(CALLBACK_FAILED, OneShotCallback(channel._on_close), "RuntimeError", exc)
    log.error(CALLBACK_FAILED, "another callback", "RuntimeError", exc)
    assert len(records(caplog, CALLBACK_LOGGER, logging.ERROR)) == 3
