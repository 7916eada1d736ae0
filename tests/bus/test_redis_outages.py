"""Redis group members and listeners under connection loss, through the fault proxy.

* A reply to ``XREADGROUP ... >`` lost to a reset: Redis had already moved its entries
  into the member's pending list. redis-py used to send the read again by itself, which
  read past them, and they stayed pending with the live member for as long as it held
  the partition (a soak found events never delivered). They must be delivered, in key
  order, without counting the cut as a delivery.
* One cut is one warning (and one info when Redis is back), not one per partition
  worker; a stall that costs a member its leases is one warning, not one per partition.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from pepperpy.event import Event, EventBus
from pepperpy.event.transports.redis import RedisTransport
from pepperpy.event.transports.redis._outage import Outages, server_of
from tests.bus.faultproxy import FaultProxy, finishes
from tests.faultproxy import Link
from tests.helpers import eventually

pytestmark = pytest.mark.redis

LOGGER = "pepperpy.event.transports.redis"
GROUP = "workers:jobs.*"


def cut_reply_carrying(proxy: FaultProxy, needle: bytes) -> list[int]:
    """Reset a group reader's connection at the first reply that carries ``needle``;
    returns the list that gets the link's number once that happened."""
    cut: list[int] = []

    def on_client(link: Link, data: bytes) -> None:
        if b"XREADGROUP" in data:
            link.marks.add("reader")

    def on_server(link: Link, data: bytes) -> str | None:
        if "reader" in link.marks and needle in data and not cut:
            cut.append(link.number)
            return "drop"  # Redis served the read; its reply never reaches the client
        return None

    proxy.on_client, proxy.on_server = on_client, on_server  # type: ignore[assignment]
    return cut


def through(proxy: FaultProxy, namespace: str, **options: Any) -> RedisTransport:
    options.setdefault("trim_interval", None)
    return RedisTransport(f"redis://127.0.0.1:{proxy.port}/0", namespace=namespace, **options)


async def none_pending(client: Any, namespace: str, within: float = 5) -> None:
    """Wait until the group has nothing pending on partition 0 (every ack reached Redis)."""
    async with asyncio.timeout(within):
        while (await client.xpending(f"{namespace}:stream:0", GROUP))["pending"]:
            await asyncio.sleep(0.01)


@pytest.mark.parametrize("max_deliveries", [5, 1])
async def test_a_read_reply_lost_to_a_reset_is_delivered_in_key_order_by_the_live_member(
    proxy: FaultProxy,
    namespace: str,
    redis_url: str,
    client: Any,
    caplog: pytest.LogCaptureFixture,
    max_deliveries: int,
) -> None:
    """With ``max_deliveries=1`` a cut counted as a delivery would dead-letter the event."""
    caplog.set_level(logging.WARNING, logger=LOGGER)
    cut = cut_reply_carrying(proxy, b"first-event")
    got: list[Any] = []
    options = dict(partitions=1, lease_ttl=1.0, max_backoff=0.1, max_deliveries=max_deliveries)
    transport = through(proxy, namespace, **options)
    consumer = EventBus(transport=transport)
    consumer.subscribe("jobs.*", group="workers")(lambda event: got.append(event.data))
    dead: list[Event] = []
    consumer.subscribe("deadletter.#")(dead.append)
    publisher = EventBus(transport=RedisTransport(redis_url, namespace=namespace, partitions=1))
    async with consumer, publisher:
        await publisher.publish("jobs.run", "first-event", key="job-1")
        await eventually(lambda: bool(cut), timeout=10)
        await publisher.publish("jobs.run", "second-event", key="job-1")
        # the member keeps its lease all along: before, the first event stayed pending
        # with it, never delivered (the sweep takes only other consumers' entries)
        await eventually(lambda: len(got) >= 2, timeout=5)
        await none_pending(client, namespace)  # both acknowledged
        assert got == ["first-event", "second-event"]  # in key order, each once
        assert not dead
        member = transport._members[0]
        lease = await client.get(member.lease_keys[0])
        assert lease == member.consumer.encode()  # no lease change delivered it
    assert not [r for r in caplog.records if "lost its lease" in r.getMessage()]


async def test_acknowledged_events_are_not_delivered_again_after_a_reader_reset(
    proxy: FaultProxy, namespace: str, redis_url: str, client: Any
) -> None:
    got: list[Any] = []
    consumer = EventBus(transport=through(proxy, namespace, partitions=1, max_backoff=0.1))
    consumer.subscribe("jobs.*", group="workers")(lambda event: got.append(event.data))
    publisher = EventBus(transport=RedisTransport(redis_url, namespace=namespace, partitions=1))
    async with consumer, publisher:
        for n in range(20):
            await publisher.publish("jobs.run", n, key="job")
        await eventually(lambda: len(got) == 20)
        await none_pending(client, namespace)
        reset = proxy.drop()  # every link: the reader's, blocked in XREADGROUP, too
        assert reset
        await publisher.publish("jobs.run", "after", key="job")
        await eventually(lambda: "after" in got)
    assert got == [*range(20), "after"]


async def test_one_cut_is_one_warning_and_one_info_however_many_workers_meet_it(
    proxy: FaultProxy,
    namespace: str,
    redis_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    partitions = 4
    grouped: list[Any] = []
    listened: list[Any] = []
    consumer = EventBus(transport=through(proxy, namespace, partitions=partitions, max_backoff=0.2))
    consumer.subscribe("jobs.*", group="workers")(lambda event: grouped.append(event.data))
    consumer.subscribe("jobs.*")(lambda event: listened.append(event.data))
    publisher = EventBus(
        transport=RedisTransport(redis_url, namespace=namespace, partitions=partitions)
    )

    def failed(who: str) -> bool:
        return any(
            who in r.getMessage() and "unreachable" in r.getMessage() for r in caplog.records
        )

    def recovered() -> int:
        return sum("is reachable again after" in r.getMessage() for r in caplog.records)

    async with consumer, publisher:
        for outage in (1, 2):
            proxy.refuse()  # reconnections fail until every loop has met the cut
            proxy.drop()
            await eventually(
                lambda: (
                    all(failed(f"(partition {p})") for p in range(partitions))
                    and failed("the listener")
                ),
                timeout=10,
            )
            proxy.heal()
            await eventually(lambda: recovered() == outage, timeout=10)  # noqa: B023
            await publisher.publish("jobs.run", outage, key=str(outage))
            await eventually(lambda: outage in grouped and outage in listened)  # noqa: B023
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 2, [r.getMessage() for r in warnings]
    for warning in warnings:
        assert warning.getMessage().startswith(f"Redis at 127.0.0.1:{proxy.port} is unreachable (")
    [first, second] = [r for r in caplog.records if "is reachable again after" in r.getMessage()]
    assert first.levelno == second.levelno == logging.INFO
    details = [
        r
        for r in caplog.records
        if r.levelno == logging.DEBUG and "Redis unreachable" in r.getMessage()
    ]
    assert len(details) >= 2 * (partitions - 1)  # the other workers' failures, at debug


async def test_a_stall_that_costs_a_member_its_leases_is_one_warning(
    proxy: FaultProxy, namespace: str, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    got: list[Any] = []
    transport = RedisTransport(
        f"redis://127.0.0.1:{proxy.port}/0?socket_timeout=2",
        namespace=namespace,
        partitions=4,
        lease_ttl=1.0,
        max_backoff=0.2,
        trim_interval=None,
    )
    consumer = EventBus(transport=transport)
    consumer.subscribe("jobs.*", group="workers")(lambda event: got.append(event.data))
    publisher = EventBus(transport=RedisTransport(redis_url, namespace=namespace, partitions=4))

    def lease_losses() -> list[logging.LogRecord]:
        return [r for r in caplog.records if "lost its lease" in r.getMessage()]

    async with consumer, publisher:
        await eventually(lambda: len(transport._members[0]._workers) == 4)
        proxy.pause()  # silence: renewals time out, the leases lapse
        try:
            await eventually(lambda: bool(lease_losses()), timeout=30)
        finally:
            proxy.resume()
        proxy.drop()
        await publisher.publish("jobs.run", "after", key="k")
        await eventually(lambda: "after" in got, timeout=20)
        await finishes(consumer.close(), 10)
    [loss] = lease_losses()
    assert loss.getMessage() == "group 'workers:jobs.*' lost its lease on partitions 0, 1, 2, 3"


def test_an_outage_ends_once_every_loop_that_failed_has_had_an_answer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    outages = Outages("example.com:6379", 2.0)
    reset = ConnectionError("reset by peer")
    outages.lost("worker 0", "worker 0", reset)
    outages.lost("worker 1", "worker 1", reset)
    outages.reached("worker 0")
    outages.reached("listener")  # never failed: worker 1 still does
    assert outages.down
    outages.forget("worker 1")  # it ended without an answer: nobody had one since
    assert outages.down
    outages.reached("listener")
    assert not outages.down
    outages.lost(None, "acknowledging", reset)  # a one-off command opens an outage too
    outages.reached("worker 0")  # and the next answer to any loop ends it
    assert not outages.down
    logged = [(r.levelname, r.getMessage()[:34]) for r in caplog.records]
    assert logged == [
        ("WARNING", "Redis at example.com:6379 is unrea"),
        ("DEBUG", "worker 1: Redis unreachable (reset"),
        ("INFO", "Redis at example.com:6379 is reach"),
        ("WARNING", "Redis at example.com:6379 is unrea"),
        ("INFO", "Redis at example.com:6379 is reach"),
    ]
    assert "2 failed attempts" in caplog.records[2].getMessage()


def test_credentials_refused_at_run_time_are_an_error_not_unreachable(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # a password rotated under a running consumer: redis-py raises AuthenticationError,
    # a ConnectionError, and it was logged as "Redis ... is unreachable"
    from redis.exceptions import AuthenticationError

    caplog.set_level(logging.DEBUG, logger=LOGGER)
    outages = Outages("example.com:6379", 2.0, (AuthenticationError,))
    refused = AuthenticationError("invalid username-password pair or user is disabled.")
    outages.lost("worker 0", "group 'workers:jobs.*' (partition 0)", refused)
    assert outages.down  # nothing is consumed meanwhile: health() says so
    [record] = caplog.records
    assert record.levelno == logging.ERROR
    assert record.getMessage().startswith(
        "Redis at example.com:6379 refuses the transport's credentials (invalid "
        "username-password pair or user is disabled., met by group 'workers:jobs.*' "
        "(partition 0)): check the user and password in its URL"
    )
    assert "unreachable" not in record.getMessage()


@pytest.mark.parametrize(
    ("url", "logged"),
    [
        ("redis://user:secret@example.com:6380/0", "example.com:6380"),
        ("rediss://:secret@example.com/0", "example.com:6379"),
        ("redis://[::1]:7000/0", "[::1]:7000"),
        ("unix:///run/redis.sock?db=0", "/run/redis.sock"),
    ],
)
def test_outages_name_the_server_without_credentials(url: str, logged: str) -> None:
    assert server_of(url) == logged
