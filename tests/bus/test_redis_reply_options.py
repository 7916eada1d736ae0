"""redis-py URL options that change what its replies look like are refused when the
transport is made.

``?protocol=3`` and ``?legacy_responses=false`` make ``XREADGROUP``'s reply a dict: every
group read raised ``KeyError: 0``, logged with its traceback, and the events came only
through the claims that followed each failure. ``?decode_responses=...`` (even ``false``:
redis-py passes the URL's text on, and ``'false'`` is true) made replies text, and a
group never delivered (``'str' object has no attribute 'decode'`` at every round);
``?encoding=bogus`` raised a bare ``LookupError`` at ``start()``.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from pepperpy.event import ConfigurationError, Event, EventBus
from pepperpy.event.transports.redis import RedisTransport


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("protocol=3", "protocol=3 in the Redis URL is not supported"),
        ("legacy_responses=false", "legacy_responses=false in the Redis URL is not supported"),
        ("decode_responses=true", "decode_responses in the Redis URL is not supported"),
        ("decode_responses=false", "decode_responses in the Redis URL is not supported"),
        ("encoding=bogus", "encoding in the Redis URL must be utf-8, got 'bogus'"),
        ("encoding=latin-1", "encoding in the Redis URL must be utf-8, got 'latin-1'"),
    ],
)
def test_options_that_reshape_replies_are_refused_when_made(query: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        RedisTransport(f"redis://127.0.0.1:6379/0?{query}")
    with pytest.raises(ConfigurationError, match=message):
        EventBus(transport=f"redis://127.0.0.1:6379/0?namespace=x&{query}")


@pytest.mark.redis
async def test_the_default_spellings_still_deliver_without_errors(
    redis_url: str, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    query = "protocol=2&legacy_responses=true&encoding=UTF8"
    bus = EventBus(transport=f"{redis_url}?namespace={namespace}&partitions=2&{query}")
    got: list[int] = []

    @bus.subscribe("replies.*", group="g")
    async def handle(event: Event) -> None:
        got.append(event.data["n"])

    with caplog.at_level(logging.ERROR, logger="pepperpy.event.transports.redis"):
        async with asyncio.timeout(30), bus:
            for n in range(3):
                await bus.publish("replies.made", {"n": n}, key="k")
            while len(got) < 3:
                await asyncio.sleep(0.02)
    assert got == [0, 1, 2]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
