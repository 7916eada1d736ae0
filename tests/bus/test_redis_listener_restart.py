"""The shared reader of ungrouped subscriptions, ended by something it did not expect.

Every failure of a round is retried inside the reader's loop; what ends the loop itself
(an error in its own recovery, a cancellation from another task) left every ungrouped
subscription of the process receiving nothing, silently: the next subscription joined
the dead reader, ``health()`` said ready, and ``close()`` logged the error at the end.
Now the death is logged with its cause, ``health()`` reports it (``outage_reason``
``"consumer failed"``) until a reader reads again, and the reader is restarted (by
itself after a failure, by the next subscription in any case), reading on where it
stopped, so what was published meanwhile is delivered (docs/transport-redis.md,
"Reconnecting").
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from typing import Any

import pytest
import redis.asyncio as aioredis

from pepperpy.event import Event, EventBus, RetryPolicy
from pepperpy.event.transports.redis import RedisTransport
from pepperpy.event.transports.redis._config import partition_of
from tests.helpers import eventually

pytestmark = pytest.mark.redis

LOGGER = "pepperpy.event.transports.redis"


def key_of(partition: int, partitions: int) -> str:
    """A partition key that routes to ``partition``."""
    return next(
        key for key in (f"k{n}" for n in range(1000)) if partition_of(key, partitions) == partition
    )


def records(caplog: pytest.LogCaptureFixture, level: int, *needles: str) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.levelno == level and all(n in r.getMessage() for n in needles)
    ]


async def test_a_reader_killed_by_an_error_in_its_recovery_is_restarted_and_reads_on(
    redis_url: str,
    namespace: str,
    client: aioredis.Redis,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    transport = RedisTransport(
        f"{redis_url}?namespace={namespace}&partitions=2&trim_interval=off&max_backoff=0.3"
    )
    bus = EventBus(transport=transport, retry_policy=RetryPolicy.NONE)
    broken, healthy = key_of(0, 2), key_of(1, 2)
    stream = transport.stream_for("o.made", broken)
    seen: list[int] = []
    later: list[int] = []

    @bus.subscribe("o.*")
    def record(event: Event) -> None:
        seen.append(event.data)

    async with asyncio.timeout(60), bus:
        await bus.publish("o.made", 1, key=healthy)
        await eventually(lambda: seen == [1])
        assert bus.health().ready
        listener: Any = transport._listener
        # the narrowest seam: the look at the streams' types after a refused read (a
        # stream key another client replaced, a real WRONGTYPE) fails as a bug would
        real = listener.find_broken
        failing = [True]

        async def find_broken(streams: list[str]) -> bool:
            if failing[0]:
                raise RuntimeError("a bug in the reader's recovery")
            result: bool = await real(streams)
            return result

        monkeypatch.setattr(listener, "find_broken", find_broken)
        await client.delete(stream)
        await client.set(stream, "not a stream")
        # logged with its cause and traceback, once however often it dies of it
        await eventually(lambda: bool(records(caplog, logging.ERROR, "shared reader")))
        death = records(caplog, logging.ERROR, "shared reader")[0]
        assert "RuntimeError: a bug in the reader's recovery" in death.getMessage()
        assert death.exc_info is not None
        # the health check says so while it keeps dying
        await eventually(lambda: bus.health().outage_reason == "consumer failed")
        health = bus.health()
        assert not health.ready
        assert health.outage is not None
        assert "a bug in the reader's recovery" in (health.outage_message or "")
        await bus.publish("o.made", 2, key=healthy)  # published while it is dead
        await asyncio.sleep(1.0)  # a few deaths and restarts
        assert len(records(caplog, logging.ERROR, "shared reader")) == 1
        failing[0] = False
        # restarted by itself, it reads on where it stopped: nothing published meanwhile
        # is missed, the broken stream is set aside as before
        await eventually(lambda: seen == [1, 2], timeout=20)
        await eventually(lambda: bus.health().ready)
        await client.delete(stream)
        await bus.publish("o.made", 3, key=broken)
        await eventually(lambda: seen == [1, 2, 3])
        bus.subscribe("o.made", lambda event: later.append(event.data))
        await bus.start()
        await bus.publish("o.made", 4, key=healthy)
        await eventually(lambda: seen == [1, 2, 3, 4] and later == [4])
    assert not records(caplog, logging.ERROR, "closing a Redis consumer failed")


async def test_a_reader_cancelled_from_outside_is_restarted_by_the_next_subscription(
    redis_url: str, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    transport = RedisTransport(f"{redis_url}?namespace={namespace}&trim_interval=off")
    bus = EventBus(transport=transport, retry_policy=RetryPolicy.NONE)
    first: list[int] = []
    second: list[int] = []
    bus.subscribe("o.*", lambda event: first.append(event.data))

    async with asyncio.timeout(60), bus:
        await bus.publish("o.made", 1)
        await eventually(lambda: first == [1])
        listener: Any = transport._listener
        reader = listener._task
        reader.cancel()  # another task's doing (a "cancel every task" helper, say)
        await asyncio.wait([reader])
        assert records(caplog, logging.WARNING, "shared reader", "cancelled")
        health = bus.health()
        assert health.outage_reason == "consumer failed"
        assert not health.ready
        await bus.publish("o.made", 2)  # published while nothing reads
        bus.subscribe("o.*", lambda event: second.append(event.data))
        await bus.start()  # the subscription restarts the reader at once
        await eventually(lambda: first == [1, 2])
        await bus.publish("o.made", 3)
        await eventually(lambda: first == [1, 2, 3] and second == [3])
        await eventually(lambda: bus.health().ready)
    assert not records(caplog, logging.ERROR, "closing a Redis consumer failed")


_UNCLOSED = """
import asyncio, logging, sys
from pepperpy.event import EventBus

logging.basicConfig(level=logging.DEBUG, format="%(levelname)s %(message)s")
logging.getLogger("asyncio").setLevel(logging.WARNING)

async def main():
    bus = EventBus(transport=sys.argv[1])
    bus.subscribe("o.*", lambda event: None)
    await bus.start()
    await bus.publish("o.made", 1)
    # no bus.close(): the script's loop ends first, and asyncio.run cancels what is left

asyncio.run(main())
"""


async def test_a_bus_left_open_at_the_loop_end_logs_no_warning_about_its_reader(
    redis_url: str, namespace: str
) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _UNCLOSED,
        f"{redis_url}?namespace={namespace}&trim_interval=off",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        async with asyncio.timeout(60):
            _, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()
    ended = [line for line in err.decode().splitlines() if "shared reader" in line]
    assert ended  # its end is logged, at DEBUG: asyncio.run() cancelled every task
    assert all(line.startswith("DEBUG ") for line in ended), ended


async def test_a_round_failing_unexpectedly_again_and_again_is_logged_once_and_reported(
    redis_url: str,
    namespace: str,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    transport = RedisTransport(
        f"{redis_url}?namespace={namespace}&partitions=1&trim_interval=off&max_backoff=0.1"
    )
    bus = EventBus(transport=transport, retry_policy=RetryPolicy.NONE)
    seen: list[int] = []
    bus.subscribe("o.*", lambda event: seen.append(event.data))

    def logged() -> list[logging.LogRecord]:
        return [
            r
            for r in caplog.records
            if r.exc_info and "a bug handing entries out" in str(r.exc_info[1])
        ]

    async with asyncio.timeout(60), bus:
        listener: Any = transport._listener
        # the narrowest seam: handing what a read brought out fails as a bug would
        real = listener._dispatch
        failing = [True]

        async def dispatch(*args: Any) -> None:
            if failing[0]:
                raise RuntimeError("a bug handing entries out")
            await real(*args)

        monkeypatch.setattr(listener, "_dispatch", dispatch)
        await bus.publish("o.made", 1)
        await eventually(lambda: bool(logged()))
        await eventually(lambda: bus.health().outage_reason == "consumer failed")
        assert "a bug handing entries out" in (bus.health().outage_message or "")
        await asyncio.sleep(1.0)  # ten retries or so
        assert len(logged()) == 1
        failing[0] = False
        await eventually(lambda: seen == [1], timeout=20)
        await eventually(lambda: bus.health().ready)
