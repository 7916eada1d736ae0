"""A Redis claim whose reply was lost is the caller's claim, not one left pending for
the whole lease (300 s by default: every redelivery of the notification waited it out).

On the real Redis through the fault proxy (tests/faultproxy.py), which resets the
connection instead of forwarding the reply to the claim's ``SET NX``; what Redis holds
is read on a direct connection.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from pepperpy.event import MemoryChannel, NotificationSystem, RetryPolicy
from pepperpy.event.notifications import RedisIdempotencyStore
from tests.conftest import unique_name
from tests.faultproxy import Action, FaultProxy, Link
from tests.helpers import delete_redis_keys

pytestmark = pytest.mark.redis


@pytest.fixture
async def prefix(redis_url: str) -> AsyncIterator[str]:
    name = unique_name("pepnotify") + ":"
    yield name
    await delete_redis_keys(redis_url, f"{name}*")


def _redis_port(redis_url: str) -> int:
    from urllib.parse import urlsplit

    return urlsplit(redis_url).port or 6379


class LoseClaimReplies:
    """Resets the connection in place of the reply to the first ``times`` claims."""

    def __init__(self, prefix: str, times: int = 1) -> None:
        self.prefix = prefix.encode()
        self.left = times
        self.lost = 0

    def client(self, link: Link, data: bytes) -> Action:
        if b"\r\nSET\r\n" in data.upper() and self.prefix in data and b"\r\nNX\r\n" in data.upper():
            link.marks.add("claim")
        return None

    def server(self, link: Link, data: bytes) -> Action:
        if "claim" in link.marks and self.left > 0:
            link.marks.discard("claim")
            self.left -= 1
            self.lost += 1
            return "drop"
        link.marks.discard("claim")
        return None


async def test_a_claim_whose_reply_was_lost_is_the_callers(redis_url: str, prefix: str) -> None:
    import redis.asyncio as aioredis

    direct = aioredis.Redis.from_url(redis_url)
    async with FaultProxy(_redis_port(redis_url)) as proxy:
        faults = LoseClaimReplies(prefix)
        proxy.on_client, proxy.on_server = faults.client, faults.server
        store = RedisIdempotencyStore(f"redis://127.0.0.1:{proxy.port}/0", prefix=prefix)
        other = RedisIdempotencyStore(redis_url, prefix=prefix)  # another process
        try:
            state = await store.claim("k")
            assert faults.lost == 1  # the reply really was lost
            assert state == "claimed"
            held = await direct.get(prefix + "k")
            assert held is not None and held.startswith(b"pending:")
            assert await other.claim("k") == "busy"  # still one holder
            await store.complete("k")
            assert await other.claim("k") == "done"
        finally:
            await store.close()
            await other.close()
            await direct.aclose()


async def test_a_notification_whose_claim_reply_was_lost_is_sent_once(
    redis_url: str, prefix: str
) -> None:
    async with FaultProxy(_redis_port(redis_url)) as proxy:
        faults = LoseClaimReplies(prefix)
        proxy.on_client, proxy.on_server = faults.client, faults.server
        inbox = MemoryChannel(kind="email")
        store = RedisIdempotencyStore(f"redis://127.0.0.1:{proxy.port}/0", prefix=prefix)
        notifications = NotificationSystem(idempotency=store, retry_policy=RetryPolicy.NONE)
        notifications.add_channel("email", inbox)
        try:
            first = await notifications.notify(body="b", to="a@example.com", idempotency_key="o-1")
            # it failed, and left the key pending: this one waited out the 300-s lease
            assert first["email"].status == "sent", first["email"].error
            again = await notifications.notify(body="b", to="a@example.com", idempotency_key="o-1")
        finally:
            await notifications.close()

    assert faults.lost == 1
    assert again["email"].status == "duplicate"
    assert len(inbox.outbox) == 1


async def test_a_claim_lost_on_its_way_is_taken_once(redis_url: str, prefix: str) -> None:
    # the SET never reached Redis: the key is not there, so the same SET NX takes it
    dropped: list[Link] = []

    def lose_request(link: Link, data: bytes) -> Action:
        upper = data.upper()
        if not dropped and b"\r\nSET\r\n" in upper and prefix.encode() in data:
            dropped.append(link)
            return "drop"
        return None

    async with FaultProxy(_redis_port(redis_url)) as proxy:
        proxy.on_client = lose_request
        store = RedisIdempotencyStore(f"redis://127.0.0.1:{proxy.port}/0", prefix=prefix)
        other = RedisIdempotencyStore(redis_url, prefix=prefix)
        try:
            assert await store.claim("k") == "claimed"
            assert len(dropped) == 1
            assert await other.claim("k") == "busy"
            await store.release("k")  # fenced by the token: it is ours, so it goes
            assert await other.claim("k") == "claimed"
        finally:
            await store.close()
            await other.close()
