"""Ungrouped Redis subscriptions progress independently, keep their order, and close cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import random
import sys
import time
from typing import Any

import pytest

from pepperpy.event import Event, EventBus, RetryPolicy
from tests.helpers import eventually

pytestmark = pytest.mark.redis


def make_bus(redis_url: str, namespace: str, **params: Any) -> EventBus:
    query = "&".join(f"{k}={v}" for k, v in {"namespace": namespace, **params}.items())
    return EventBus(transport=f"{redis_url}?{query}", retry_policy=RetryPolicy.NONE)


async def test_a_slow_handler_does_not_delay_another_subscription(
    redis_url: str, namespace: str
) -> None:
    bus = make_bus(redis_url, namespace)
    slow_started: list[float] = []
    fast_seen: list[float] = []

    @bus.subscribe("h.slow")
    async def slow(event: Event) -> None:
        slow_started.append(time.monotonic())
        await asyncio.sleep(2)

    @bus.subscribe("h.fast")
    async def fast(event: Event) -> None:
        fast_seen.append(time.monotonic())

    async with asyncio.timeout(15), bus:
        await bus.publish("h.slow", 1)
        await eventually(lambda: bool(slow_started), timeout=5)
        sent = time.monotonic()
        await bus.publish("h.fast", 2)
        await eventually(lambda: bool(fast_seen), timeout=5)
        assert fast_seen[0] - sent < 0.5, "the fast subscription waited for the slow one"


async def test_close_delivers_every_event_already_read(redis_url: str, namespace: str) -> None:
    bus = make_bus(redis_url, namespace)
    handled: list[int] = []

    @bus.subscribe("d.n")
    async def slow(event: Event) -> None:
        await asyncio.sleep(0.2)
        handled.append(event.data)

    count = 6
    async with asyncio.timeout(15):
        await bus.start()
        transport: Any = bus.transport
        client = transport._require_client()
        stream = transport.stream_for("d.n")
        # one transaction: the listener's blocked read returns all of them in one batch
        pipe = client.pipeline(transaction=True)
        for n in range(count):
            pipe.xadd(stream, {"topic": "d.n", "event": Event("d.n", n).to_json()})
        last = (await pipe.execute())[-1]
        await eventually(lambda: transport._listener._positions[stream] == last, timeout=5)
        await bus.close()  # the listener has read all of them: close delivers all of them
    assert handled == list(range(count))


async def test_each_subscription_keeps_per_key_order_while_others_are_slow(
    redis_url: str, namespace: str
) -> None:
    # a tiny batch_size makes the buffers of the lagging subscription overflow, so it
    # falls behind and catches up by itself, repeatedly, while the quick one keeps pace
    bus = make_bus(redis_url, namespace, batch_size=4, partitions=4)
    keys = [f"k{n}" for n in range(4)]
    per_key = 20
    got: dict[str, dict[str, list[int]]] = {name: {k: [] for k in keys} for name in "ab"}
    rng = random.Random(7)

    @bus.subscribe("s.slow")
    async def blocker(event: Event) -> None:
        await asyncio.sleep(2)

    @bus.subscribe("acct.*")
    async def lagging(event: Event) -> None:
        await asyncio.sleep(rng.uniform(0.02, 0.04))
        got["a"][event.data["k"]].append(event.data["n"])

    @bus.subscribe("acct.#")
    async def quick(event: Event) -> None:
        await asyncio.sleep(rng.uniform(0, 0.002))
        got["b"][event.data["k"]].append(event.data["n"])

    def complete(name: str) -> bool:
        return sum(len(v) for v in got[name].values()) >= len(keys) * per_key

    async def publish_key(key: str) -> None:
        for n in range(per_key):
            await bus.publish("acct.moved", {"k": key, "n": n}, key=key)

    async with asyncio.timeout(30), bus:
        started = time.monotonic()
        await bus.publish("s.slow", None)
        await asyncio.gather(*(publish_key(k) for k in keys))
        await eventually(lambda: complete("b"), timeout=10)
        assert time.monotonic() - started < 1.5, "a subscription waited for the slow one"
        await eventually(lambda: complete("a"), timeout=10)
    for name in "ab":
        assert got[name] == {k: list(range(per_key)) for k in keys}, name


# -- a cancellation a driver call swallows ------------------------------------------------
#
# redis-py sends commands through asyncio.wait_for, which on CPython 3.11 returns the
# command's result when a cancellation arrives just as the command completes: the task
# is "cancelling" but the call returns normally. The fakes below do exactly that, every
# time, so a loop that did not look at Task.cancelling() would go on for ever.


def swallowing(result: Any) -> Any:
    """A driver call that loses a cancellation arriving while it runs, as wait_for can."""
    calls: list[None] = []

    async def call(*args: Any, **kwargs: Any) -> Any:
        calls.append(None)
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(0.01)
        return result

    call.calls = calls  # type: ignore[attr-defined]
    return call


async def ends_cancelled(task: asyncio.Task[Any]) -> None:
    task.cancel()
    # not asyncio.timeout around `await task`: that would cancel the task again and wait
    # for it, for ever if it went on; close() in the test's finally ends such a loop
    await asyncio.wait([task], timeout=5)
    assert task.done(), "the task went on after it was cancelled"
    assert task.cancelled()


async def test_the_reader_ends_when_a_read_swallows_its_cancellation(
    redis_url: str, namespace: str
) -> None:
    bus = make_bus(redis_url, namespace)

    @bus.subscribe("c.*")
    async def handler(event: Event) -> None:
        pass

    async with asyncio.timeout(15):
        await bus.start()
        try:
            listener = bus.transport._listener  # type: ignore[attr-defined]
            listener._next_check = math.inf  # plain XREADs only: the fake below serves them
            read = swallowing([])
            listener._client = FakeClient(listener._client, xread=read)
            await eventually(lambda: len(read.calls) >= 2, timeout=5)
            await ends_cancelled(listener._task)
        finally:
            await bus.close()


async def test_lease_renewal_ends_when_a_renewal_swallows_its_cancellation(
    redis_url: str, namespace: str
) -> None:
    bus = make_bus(redis_url, namespace, lease_ttl=0.3)  # a renewal every 0.1 s

    @bus.subscribe("c.*", group="g")
    async def handler(event: Event) -> None:
        pass

    async with asyncio.timeout(15):
        await bus.start()
        try:
            (member,) = bus.transport._members  # type: ignore[attr-defined]
            renew = swallowing(None)
            member._heartbeat = renew
            await eventually(lambda: len(renew.calls) >= 2, timeout=5)
            await ends_cancelled(member._beater)
        finally:
            await bus.close()


async def test_the_trimmer_ends_when_a_trim_swallows_its_cancellation(
    redis_url: str, namespace: str
) -> None:
    bus = make_bus(redis_url, namespace, trim_interval=0.02)
    async with asyncio.timeout(15):
        await bus.start()
        try:
            transport: Any = bus.transport
            trim = swallowing(0)
            transport._trim_once = trim
            await eventually(lambda: len(trim.calls) >= 2, timeout=5)
            await ends_cancelled(transport._trimmer)
        finally:
            await bus.close()


class FakeClient:
    """A client whose given commands are fakes; the others go to the real one."""

    def __init__(self, real: Any, **commands: Any) -> None:
        self._real = real
        self.__dict__.update(commands)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


_UNCLOSED = """
import asyncio, sys
from pepperpy.event import EventBus

async def main():
    bus = EventBus(transport=sys.argv[1])

    @bus.subscribe("jobs.*")
    async def handler(event):
        pass

    await bus.start()
    await bus.publish("jobs.run", {})
    # no bus.close(): asyncio.run cancels what is left, and must return

for _ in range(int(sys.argv[2])):
    asyncio.run(main())
print("ended")
"""


async def test_asyncio_run_returns_when_a_started_bus_was_not_closed(
    redis_url: str, namespace: str
) -> None:
    # the hang this guards against (the reader swallowing asyncio.run's cancellation)
    # showed in most processes within ten runs; the fakes above test it deterministically
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _UNCLOSED,
        f"{redis_url}?namespace={namespace}&partitions=2",
        "10",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        async with asyncio.timeout(60):
            out, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()
    assert out.decode().split() == ["ended"]
