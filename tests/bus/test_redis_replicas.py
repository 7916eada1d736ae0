"""``replicas=``: a publish's ``WAIT`` goes on the connection that carried its ``XADD``.

Redis's ``WAIT`` counts the replicas that have the writes made on *its own* connection.
Sent on whichever pooled connection is free, it may confirm at once without covering
the event (a publish reported as replicated that is not). The shared test server has no
replica, so ``WAIT`` always answers 0 here: the tests record, client side, which socket
each command left on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from redis.asyncio import Redis

from pepperpy.event import Event, TransportError
from pepperpy.event.transports.redis import RedisTransport
from tests.helpers import eventually

pytestmark = pytest.mark.redis

XADD = b"$4\r\nXADD\r\n"
WAIT = b"$4\r\nWAIT\r\n"


@dataclass
class Sent:
    """One write to Redis: the connection and socket it left on, the task that sent it."""

    connection: Any
    socket: Any
    task: asyncio.Task[Any] | None
    data: bytes

    def carries(self, command: bytes) -> bool:
        return command in self.data


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[Sent]:
    """Every command written by a redis-py connection during the test, in order."""
    from redis.asyncio.connection import Connection

    record: list[Sent] = []
    original: Callable[..., Awaitable[None]] = Connection.send_packed_command

    async def send_packed_command(self: Any, command: Any, *args: Any, **kwargs: Any) -> None:
        await original(self, command, *args, **kwargs)  # connects first if it must
        chunks = [command] if isinstance(command, (bytes, str)) else command
        data = b"".join(c.encode() if isinstance(c, str) else bytes(c) for c in chunks)
        # the writer object stands for the socket: a reconnect makes a new one
        record.append(Sent(self, self._writer, asyncio.current_task(), data))

    monkeypatch.setattr(Connection, "send_packed_command", send_packed_command)
    return record


async def test_each_publish_waits_on_the_connection_that_carried_its_xadd(
    redis_url: str, namespace: str, sent: list[Sent]
) -> None:
    # many concurrent publishes: the old code pipelined their XADDs on one connection
    # and sent each WAIT on whichever connection was free
    transport = RedisTransport(redis_url, namespace=namespace, replicas=1, connect_timeout=0.3)
    events = [Event("r.x", n) for n in range(40)]
    async with asyncio.timeout(20), transport:
        tasks = {asyncio.create_task(transport.publish(event)): event for event in events}
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    for outcome in outcomes:  # no replica confirms on the test server
        assert isinstance(outcome, TransportError)
        assert "only 0 of 1 replicas confirmed" in str(outcome)
    for task, event in tasks.items():
        (xadd,) = [s for s in sent if s.carries(XADD) and s.carries(event.id.encode())]
        waits = [s for s in sent if s.task is task and s.carries(WAIT)]
        assert waits, f"publish of {event.id} sent no WAIT"
        assert all(s.socket is xadd.socket for s in waits), (
            f"publish of {event.id}: XADD on {xadd.connection}, WAIT on "
            f"{[s.connection for s in waits if s.socket is not xadd.socket]}"
        )
        # and not before it: the first WAIT follows the XADD (in the same write, here)
        first = sent.index(waits[0])
        assert first > sent.index(xadd) or waits[0] is xadd
        if waits[0] is xadd:
            assert xadd.data.index(WAIT) > xadd.data.index(XADD)


async def test_a_wait_whose_connection_is_lost_is_not_asked_on_another(
    redis_url: str, namespace: str, sent: list[Sent]
) -> None:
    # a fresh connection has written nothing, so WAIT there would confirm at once (with
    # replicas connected): the outcome is unknown, and the publish must say so
    transport = RedisTransport(redis_url, namespace=namespace, replicas=1, connect_timeout=3)
    killer = Redis.from_url(redis_url)
    event = Event("r.y", 1)
    try:
        async with asyncio.timeout(20), transport:
            publish = asyncio.create_task(transport.publish(event))
            await eventually(lambda: any(s.task is publish and s.carries(WAIT) for s in sent))
            (xadd,) = [s for s in sent if s.carries(XADD) and s.carries(event.id.encode())]
            host, port = xadd.socket.get_extra_info("sockname")[:2]
            assert await killer.client_kill_filter(_type=None, addr=f"{host}:{port}") == 1
            with pytest.raises(TransportError, match="could not learn whether replicas have"):
                await publish
    finally:
        await killer.aclose()
    waits = [s for s in sent if s.task is publish and s.carries(WAIT)]
    assert all(s.socket is xadd.socket for s in waits)
