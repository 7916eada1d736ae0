"""Redis: a publish that returns normally stored its event exactly once.

An ``XADD`` has no idempotency key. When its reply is lost (a reset, a partition longer
than the socket timeout), the old code sent it again (redis-py's own retry, then the
transport's), and Redis appended the event twice whenever the first copy had got there:
10 acknowledged publishes in a 100-minute soak (docs/soak.md, finding 1). Now the
transport looks for the first copy before sending again, after closing the connection
that carried it on the server so that a copy still on its way cannot land later.

On the real server through the fault proxy (tests/faultproxy.py), with a socket timeout
of 2 s (the shortest the transport takes) and ``connect_timeout`` 10 s, in a key
namespace of the test's own; what Redis holds is read on a direct connection.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from pepperpy.event import Event, TransportError
from pepperpy.event.transports.redis import RedisTransport
from tests.bus.faultproxy import FaultProxy, finishes
from tests.conftest import unique_name
from tests.faultproxy import Action, Link
from tests.helpers import settle

pytestmark = pytest.mark.redis

#: the reply to an XADD: the new entry's id as a bulk string
ENTRY_ID = re.compile(rb"^\$\d+\r\n\d+-\d+\r\n")
#: longer than the socket timeout (2 s), shorter than connect_timeout (10 s)
PARTITION = 3.5


async def copies(client: Any, transport: RedisTransport) -> Counter[str]:
    """How many entries of each event id the transport's streams hold."""
    counted: Counter[str] = Counter()
    for stream in transport._streams:
        for _, fields in await client.xrange(stream):
            counted[json.loads(fields[b"event"])["id"]] += 1
    return counted


@pytest.fixture
async def make(proxy: FaultProxy, namespace: str) -> AsyncIterator[Callable[..., RedisTransport]]:
    """Transports through the proxy with a 2-s socket timeout; closed after the test."""
    made: list[RedisTransport] = []

    def transport(*, user: str = "", **options: Any) -> RedisTransport:
        options.setdefault("partitions", 1)
        options.setdefault("connect_timeout", 10.0)
        made.append(
            RedisTransport(
                f"redis://{user}127.0.0.1:{proxy.port}/0?socket_timeout=2",
                namespace=namespace,
                trim_interval=None,
                **options,
            )
        )
        return made[-1]

    yield transport
    proxy.on_client = proxy.on_server = None
    proxy.resume()
    proxy.heal()
    for link in proxy.links():
        link.resume()
    for each in made:
        await finishes(each.close(), 30)


def first_replies(times: int, action: Action, also: Callable[[], None] = lambda: None) -> Any:
    """An ``on_server`` hook: ``action`` on the first ``times`` chunks carrying an XADD's
    reply (and ``also()``), then nothing; its ``links`` lists the links it acted on."""
    links: list[Link] = []

    def hook(link: Link, data: bytes) -> Action:
        if len(links) >= times or not ENTRY_ID.match(data):
            return None
        links.append(link)
        also()
        return action

    hook.links = links  # type: ignore[attr-defined]
    return hook


async def test_a_publish_whose_reply_was_lost_in_a_reset_is_stored_once(
    proxy: FaultProxy, make: Callable[..., RedisTransport], client: Any
) -> None:
    """The XADD reached Redis, the connection was reset before its reply came back: the
    publish returns normally and the stream holds the event once (the old code sent it
    again on a new connection: twice)."""
    transport = make()
    async with transport:
        proxy.on_server = hook = first_replies(1, "drop")
        event = Event("once.reset", {"n": 1})
        await finishes(transport.publish(event), 15)
        assert hook.links, "no reply was lost: the test tested nothing"
        await settle(0.3)
        assert await copies(client, transport) == {event.id: 1}


async def test_a_publish_through_a_partition_longer_than_the_socket_timeout_is_stored_once(
    proxy: FaultProxy, make: Callable[..., RedisTransport], client: Any
) -> None:
    """The soak's case: every connection goes silent just after Redis appended the event,
    for longer than the socket timeout and shorter than ``connect_timeout``. The publish
    returns once the partition is over, and the event is in the stream once."""
    transport = make()
    async with transport:
        proxy.on_server = hook = first_replies(1, "pause", also=proxy.pause)
        event = Event("once.partition", {"n": 1})
        publishing = asyncio.ensure_future(transport.publish(event))
        await settle(PARTITION)
        assert hook.links, "no reply was held: the test tested nothing"
        assert not publishing.done()
        proxy.resume()
        hook.links[0].resume()
        await finishes(publishing, 15)
        await settle(0.3)
        assert await copies(client, transport) == {event.id: 1}


async def test_an_xadd_held_on_its_dead_connection_cannot_land_after_the_publish_returned(
    proxy: FaultProxy, make: Callable[..., RedisTransport], client: Any
) -> None:
    """The XADD is stuck on its way (a link holds it) past the socket timeout: the publish
    sends it again on a new connection and returns. When the stuck copy is let through
    afterwards, Redis must not append it: the transport closed its connection on the
    server before it looked for it (the old code: a second entry)."""
    transport = make()
    async with transport:
        held: list[Link] = []
        event = Event("once.held", {"n": 1})

        def hold_the_xadd(link: Link, data: bytes) -> Action:
            if held or event.id.encode() not in data:
                return None
            held.append(link)
            return "pause"

        proxy.on_client = hold_the_xadd
        await finishes(transport.publish(event), 15)
        assert held, "no XADD was held: the test tested nothing"
        assert await copies(client, transport) == {event.id: 1}
        held[0].resume()  # the copy stuck on the first connection goes on to Redis
        await settle(0.5)
        assert await copies(client, transport) == {event.id: 1}


async def test_pipelined_publishes_whose_replies_were_lost_are_each_stored_once(
    proxy: FaultProxy, make: Callable[..., RedisTransport], client: Any
) -> None:
    """Concurrent publishes share pipelines; the connections carrying the first two
    rounds of replies are reset. Every publish returns, every event is in its stream
    once; the publishes of the broken pipeline looked for their entries together (one
    ``CLIENT KILL`` each look, not one per publish)."""
    transport = make(partitions=4)
    kills: list[int] = []

    def count_kills(link: Link, data: bytes) -> Action:
        kills.append(data.count(b"\r\nKILL\r\n"))
        return None

    async with transport:
        await transport.publish(Event("once.warm", {"n": -1}))  # connected, identified
        proxy.on_server = hook = first_replies(2, "drop")
        proxy.on_client = count_kills
        events = [Event("once.pipelined", {"n": n}) for n in range(40)]
        await finishes(asyncio.gather(*(transport.publish(e, key=str(e.data)) for e in events)), 20)
        assert len(hook.links) == 2, "fewer replies were lost than the test means to lose"
        await settle(0.3)
        counted = await copies(client, transport)
        assert {e.id: counted[e.id] for e in events} == {e.id: 1 for e in events}
        # the first publish went alone, the 39 others in one pipeline: two looks
        assert 1 <= sum(kills) <= 4, f"{sum(kills)} looks for 2 lost rounds of replies"


async def test_pipelined_publishes_through_a_partition_are_each_stored_once(
    proxy: FaultProxy, make: Callable[..., RedisTransport], client: Any
) -> None:
    """Every connection goes silent at the first reply, for longer than the socket
    timeout, while concurrent publishes are in flight or queued: each returns once the
    partition is over, and each event is in its stream once."""
    transport = make(partitions=4)
    async with transport:
        await transport.publish(Event("once.warm", {"n": -1}))
        proxy.on_server = hook = first_replies(1, "pause", also=proxy.pause)
        events = [Event("once.partitioned", {"n": n}) for n in range(40)]
        publishing = asyncio.gather(*(transport.publish(e, key=str(e.data)) for e in events))
        await settle(PARTITION)
        assert hook.links, "no reply was held: the test tested nothing"
        proxy.resume()
        hook.links[0].resume()
        await finishes(publishing, 15)
        await settle(0.3)
        counted = await copies(client, transport)
        assert {e.id: counted[e.id] for e in events} == {e.id: 1 for e in events}


async def test_a_replicated_publish_whose_reply_was_lost_is_stored_once(
    proxy: FaultProxy, make: Callable[..., RedisTransport], client: Any
) -> None:
    """``replicas=1``: the XADD reached Redis and the reset took its reply. The replicas
    cannot be asked about an entry written on a connection that is gone, so the publish
    raises with ``stored=True``; the event is in the stream once, not appended again."""
    transport = make(replicas=1, connect_timeout=3.0)
    async with transport:
        proxy.on_server = hook = first_replies(1, "drop")
        event = Event("once.replicated", {"n": 1})
        with pytest.raises(TransportError, match="could not be asked") as raised:
            await finishes(transport.publish(event), 15)
        assert hook.links
        assert raised.value.stored is True
        assert "Redis has it" in str(raised.value)
        assert await copies(client, transport) == {event.id: 1}


async def test_a_publish_that_cannot_look_for_its_first_copy_says_unknown(
    proxy: FaultProxy, make: Callable[..., RedisTransport], client: Any
) -> None:
    """The reply was lost and Redis then refuses every connection until the deadline:
    the transport could not look, so ``stored`` is None (and Redis does have it, once)."""
    transport = make(connect_timeout=1.5)
    async with transport:

        def refuse_from_now() -> None:
            proxy.refuse()

        proxy.on_server = first_replies(1, "drop", also=refuse_from_now)
        event = Event("once.unknown", {"n": 1})
        with pytest.raises(TransportError, match="unreachable") as raised:
            await finishes(transport.publish(event), 15)
        assert raised.value.stored is None
        assert "whether it was stored is unknown" in str(raised.value)
        proxy.heal()
        assert await copies(client, transport) == {event.id: 1}


async def test_without_client_kill_the_look_still_finds_the_copy_and_says_it_is_unfenced(
    proxy: FaultProxy,
    make: Callable[..., RedisTransport],
    client: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A Redis user denied ``CLIENT KILL`` (an ACL, as on managed services): the look
    cannot close the lost copy's connection. It still finds the copy (the publish
    returns, the event is stored once), and a warning says copies are unfenced."""
    user = unique_name("pep_nokill")
    await client.execute_command(
        "ACL", "SETUSER", user, "on", ">secret", "~*", "&*", "+@all", "-client|kill"
    )
    try:
        transport = make(user=f"{user}:secret@")
        async with transport:
            proxy.on_server = hook = first_replies(1, "drop")
            event = Event("once.nokill", {"n": 1})
            await finishes(transport.publish(event), 15)
            assert hook.links
            await settle(0.3)
            assert await copies(client, transport) == {event.id: 1}
    finally:
        await client.execute_command("ACL", "DELUSER", user)
    warnings = [r.getMessage() for r in caplog.records if "could not close" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert "NOPERM" in warnings[0] or "permission" in warnings[0].lower()
