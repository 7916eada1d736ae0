"""The largest values the Redis transport's counts and ``lease_ttl`` take.

Too large a value was accepted when the transport was made and failed on every use:
``lease_ttl=1e15`` at start ("value is not an integer or out of range", the lease
script's Lua printing its milliseconds in exponent form) and ``lease_ttl=1e308`` with a
bare ``OverflowError``; ``maxlen`` past Redis's 64-bit range at every publish; and
``replicas`` past it at every publish *after* storing the event ("could not learn
whether replicas have ..."). Each is now a ``ConfigurationError`` naming the option, and
the largest accepted values work against Redis.

``max_backoff`` had no bound either way: ``1e12`` left every consumer asleep after an
outage, long after Redis was back (none is woken by its return), and ``1e-9`` made them
retry a lost connection thousands of times a second. It now takes 0.05 to 300 s.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote

import pytest

from pepperpy.event import ConfigurationError, Event, EventBus
from pepperpy.event.transports.redis import RedisTransport

LONG = 2**63 - 1


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("lease_ttl", 1e308, "lease_ttl must be at most 86400 s"),
        ("lease_ttl", 1e15, "lease_ttl must be at most 86400 s"),
        ("lease_ttl", 86_400.5, "lease_ttl must be at most 86400 s"),
        ("maxlen", LONG + 1, f"maxlen must be at most {LONG}"),
        ("maxlen", 10**30, f"maxlen must be at most {LONG}"),
        ("replicas", LONG + 1, f"replicas must be at most {LONG}"),
        ("max_backoff", 1e12, r"max_backoff must be from 0.05 to 300 s \(the longest pause"),
        ("max_backoff", 300.5, "max_backoff must be from 0.05 to 300 s"),
        ("max_backoff", 1e-9, "max_backoff must be from 0.05 to 300 s"),
        ("max_backoff", 0.04, "max_backoff must be from 0.05 to 300 s"),
    ],
)
def test_values_past_what_redis_takes_are_refused_when_made(
    name: str, value: Any, message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        RedisTransport("redis://127.0.0.1:6379/0", **{name: value})
    with pytest.raises(ConfigurationError, match=message):
        EventBus(transport=f"redis://127.0.0.1:6379/0?{name}={quote(str(value))}")


@pytest.mark.parametrize("value", [0.05, 300])
def test_max_backoff_takes_its_whole_range(value: float) -> None:
    assert (
        RedisTransport("redis://127.0.0.1:6379/0", max_backoff=value).options.max_backoff == value
    )
    url = f"redis://127.0.0.1:6379/0?max_backoff={value}"
    assert RedisTransport(url).options.max_backoff == value


@pytest.mark.redis
async def test_the_largest_accepted_values_work(redis_url: str, namespace: str) -> None:
    transport = RedisTransport(
        redis_url,
        namespace=namespace,
        partitions=1,
        lease_ttl=86_400,
        maxlen=LONG,
        max_backoff=300,
    )
    bus = EventBus(transport=transport)
    got: list[int] = []

    @bus.subscribe("bounds.*", group="g")
    async def handle(event: Event) -> None:
        got.append(event.data["n"])

    async with asyncio.timeout(30), bus:
        for n in range(3):
            await bus.publish("bounds.hit", {"n": n})
        while len(got) < 3:
            await asyncio.sleep(0.02)
    assert got == [0, 1, 2]
