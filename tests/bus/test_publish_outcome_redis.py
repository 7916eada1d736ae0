"""Redis: a failed publish says whether its event may be stored (``TransportError.stored``).

On the real server through the fault proxy, in a key namespace of the test's own
(``redis_through_proxy`` of tests/bus/conftest.py, deleted afterwards); what Redis holds
is counted on a direct connection (``client``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from pepperpy.event import EventBus, TransportError
from pepperpy.event.transports.redis import RedisTransport
from tests.bus.faultproxy import FaultProxy, finishes
from tests.faultproxy import Link
from tests.helpers import settle

pytestmark = pytest.mark.redis

#: the reply to an XADD: the new entry's id as a bulk string
ENTRY_ID = re.compile(rb"^\$\d+\r\n\d+-\d+\r\n")


async def entries(client: Any, transport: RedisTransport) -> int:
    """How many entries the transport's partition streams hold."""
    return sum([int(await client.xlen(stream)) for stream in transport._streams])


async def test_a_publish_while_redis_refuses_connections_was_not_stored(
    proxy: FaultProxy, redis_through_proxy: Callable[..., RedisTransport], client: Any
) -> None:
    """No XADD was sent: ``stored`` is False and the message says it was not stored."""
    transport = redis_through_proxy(partitions=1, connect_timeout=1.0)
    async with EventBus(transport=transport) as bus:
        await bus.publish("outcome.before", {"n": 0})
        proxy.refuse()
        proxy.drop()
        await settle(0.2)  # the pooled connection's reset has arrived
        with pytest.raises(TransportError, match="unreachable") as raised:
            await finishes(bus.publish("outcome.lost", {"n": 1}), 10)
        assert raised.value.stored is False
        assert "it was not stored" in str(raised.value)
        assert "unknown" not in str(raised.value)
        proxy.heal()
        await finishes(bus.publish("outcome.after", {"n": 2}), 10)
        assert await entries(client, transport) == 2


async def test_a_publish_whose_reply_was_lost_may_be_stored(
    proxy: FaultProxy, redis_through_proxy: Callable[..., RedisTransport], client: Any
) -> None:
    """The XADD reached Redis and its reply never came before ``connect_timeout`` (the
    link stays silent), so no time was left to look for it: ``stored`` is None and the
    message says so. (Redis did append it.) A look that can be made settles it:
    tests/bus/test_redis_publish_once.py."""

    def hold_the_reply(link: Link, data: bytes) -> str | None:
        return "pause" if ENTRY_ID.match(data) else None

    transport = redis_through_proxy(partitions=1, connect_timeout=1.0)
    async with EventBus(transport=transport) as bus:
        await bus.publish("outcome.before", {"n": 0})
        proxy.on_server = hold_the_reply
        with pytest.raises(TransportError, match="unreachable") as raised:
            await finishes(bus.publish("outcome.lost", {"n": 1}), 10)
        proxy.on_server = None
        proxy.drop()
        assert raised.value.stored is None
        assert "whether it was stored is unknown" in str(raised.value)
        assert "publishing it again may deliver it twice" in str(raised.value)
        assert await entries(client, transport) == 2


async def test_a_publish_redis_answers_with_an_error_was_not_stored(
    redis_url: str, namespace: str, client: Any
) -> None:
    """Redis refused the XADD (the stream's key holds a string): ``stored`` is False."""
    transport = RedisTransport(redis_url, namespace=namespace, partitions=1, trim_interval=None)
    async with EventBus(transport=transport) as bus:
        await client.set(transport._streams[0], "not a stream")
        with pytest.raises(TransportError, match="WRONGTYPE") as raised:
            await bus.publish("outcome.refused", {"n": 1})
    assert raised.value.stored is False
    assert "it was not stored" in str(raised.value)


async def test_a_publish_the_replicas_did_not_confirm_is_stored(
    redis_url: str, namespace: str, client: Any
) -> None:
    """``replicas=1`` on a Redis without replicas: Redis has the event, ``stored`` is True."""
    transport = RedisTransport(
        redis_url, namespace=namespace, partitions=1, replicas=1, connect_timeout=0.5
    )
    async with EventBus(transport=transport) as bus:
        with pytest.raises(TransportError, match="only 0 of 1 replicas") as raised:
            await bus.publish("outcome.unconfirmed", {"n": 1})
        assert raised.value.stored is True
        assert "Redis has it" in str(raised.value)
        assert await entries(client, transport) == 1
