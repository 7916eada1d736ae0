"""Idempotency shared through Redis: processes running the same handlers never notify
twice for one key or one redelivered event."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from pepperpy.event import (
    ConfigurationError,
    Event,
    MemoryChannel,
    Notification,
    NotificationError,
    NotificationSystem,
    RetryPolicy,
)
from pepperpy.event.notifications import MemoryIdempotencyStore, RedisIdempotencyStore
from tests.conftest import unique_name
from tests.helpers import delete_redis_keys
from tests.notifications.servers import free_port

pytestmark = pytest.mark.redis


@pytest.fixture
async def store_url(redis_url: str) -> AsyncIterator[str]:
    prefix = unique_name("pepnotify") + ":"
    yield f"{redis_url}?prefix={prefix}&lease=5"
    await delete_redis_keys(redis_url, f"{prefix}*")


def _process(store_url: str, inbox: MemoryChannel) -> NotificationSystem:
    """What each process would build: the same handler, one shared idempotency store."""
    notifications = NotificationSystem(idempotency=store_url, retry_policy=RetryPolicy.NONE)
    notifications.add_channel("email", inbox)

    @notifications.on("user.signup")
    async def welcome(event: Event) -> None:
        await notifications.notify(channels=["email"], template="welcome", **event.data)

    return notifications


async def test_one_key_is_sent_once_across_processes(store_url: str) -> None:
    inboxes = [MemoryChannel(), MemoryChannel()]
    systems = [_process(store_url, inbox) for inbox in inboxes]
    try:
        first = await systems[0].notify(body="x", to="a@b.c", idempotency_key="order-7")
        second = await systems[1].notify(body="x", to="a@b.c", idempotency_key="order-7")
    finally:
        for system in systems:
            await system.close()

    assert first["email"].status == "sent" and second["email"].status == "duplicate"
    assert len(inboxes[0].outbox) + len(inboxes[1].outbox) == 1


async def test_redelivered_event_notifies_once_across_processes(store_url: str) -> None:
    inboxes = [MemoryChannel(), MemoryChannel()]
    systems = [_process(store_url, inbox) for inbox in inboxes]
    event = Event("user.signup", {"user": {"name": "Ana", "email": "ana@example.com"}})
    try:
        await systems[0].emit(event)
        await systems[1].emit(event)  # a broker redelivers the same event elsewhere
        await systems[1].emit(Event("user.signup", event.data))  # a new event: a new message
    finally:
        for system in systems:
            await system.close()

    assert [len(inbox.outbox) for inbox in inboxes] == [1, 1]


async def test_concurrent_claims_wait_for_the_holder(store_url: str) -> None:
    release = asyncio.Event()
    sending = asyncio.Event()

    class Slow(MemoryChannel):
        async def send(self, notification: Notification) -> None:
            sending.set()
            await release.wait()
            await super().send(notification)

    slow, other = Slow(), MemoryChannel()
    a = NotificationSystem(idempotency=store_url)
    b = NotificationSystem(idempotency=store_url)
    a.add_channel("email", slow)
    b.add_channel("email", other)
    try:
        first = asyncio.ensure_future(a.notify(body="x", to="a@b.c", idempotency_key="k"))
        await asyncio.wait_for(sending.wait(), timeout=10)  # a holds the claim now
        second = asyncio.ensure_future(b.notify(body="x", to="a@b.c", idempotency_key="k"))
        await asyncio.sleep(0.1)
        assert not second.done()  # b waits while a holds the claim
        release.set()
        results = await asyncio.gather(first, second)
    finally:
        await a.close()
        await b.close()

    assert [r["email"].status for r in results] == ["sent", "duplicate"]
    assert len(slow.outbox) == 1 and other.outbox == []


async def test_failed_delivery_releases_the_claim(store_url: str) -> None:
    class Down(MemoryChannel):
        async def send(self, notification: Notification) -> None:
            raise ConnectionError("down")

    a = NotificationSystem(idempotency=store_url, retry_policy=RetryPolicy.NONE)
    b = NotificationSystem(idempotency=store_url)
    a.add_channel("email", Down())
    inbox = b.add_channel("email", MemoryChannel())
    try:
        failed = await a.notify(body="x", to="a@b.c", idempotency_key="k")
        retried = await b.notify(body="x", to="a@b.c", idempotency_key="k")
    finally:
        await a.close()
        await b.close()

    assert failed["email"].status == "failed" and retried["email"].status == "sent"
    assert isinstance(inbox, MemoryChannel) and len(inbox.outbox) == 1


@pytest.fixture
async def store_prefix(redis_url: str) -> AsyncIterator[str]:
    """A URL without a lease yet (the test adds ``&lease=``), keys removed afterwards."""
    prefix = unique_name("pepnotify") + ":"
    yield f"{redis_url}?prefix={prefix}"
    await delete_redis_keys(redis_url, f"{prefix}*")


async def test_a_live_holder_keeps_its_claim_past_the_lease(store_prefix: str) -> None:
    # the claim was never renewed: a delivery still under way after the lease (queued
    # behind a rate limit, or waiting to retry) lost it, and another process sent the
    # same message again
    url = store_prefix + "&lease=1.5"
    sending = asyncio.Event()
    waiting = asyncio.Event()

    class Watched(RedisIdempotencyStore):
        async def wait(self, key: str) -> None:
            waiting.set()  # b found the key busy: a still holds it
            await super().wait(key)

    class HeldUntilWaitedFor(MemoryChannel):
        async def send(self, notification: Notification) -> None:
            sending.set()
            await asyncio.wait_for(waiting.wait(), 8)
            await super().send(notification)

    slow, other = HeldUntilWaitedFor(), MemoryChannel()
    a = NotificationSystem(idempotency=url, retry_policy=RetryPolicy.NONE)
    b = NotificationSystem(idempotency=Watched(url), retry_policy=RetryPolicy.NONE)
    a.add_channel("email", slow)
    b.add_channel("email", other)
    try:
        first = asyncio.ensure_future(a.notify(body="x", to="a@b.c", idempotency_key="k"))
        await asyncio.wait_for(sending.wait(), 10)
        await asyncio.sleep(3.5)  # more than two leases: only renewals keep the claim
        second = await asyncio.wait_for(b.notify(body="x", to="a@b.c", idempotency_key="k"), 20)
        results = [await first, second]
    finally:
        await a.close()
        await b.close()

    assert [r["email"].status for r in results] == ["sent", "duplicate"]
    assert len(slow.outbox) == 1 and other.outbox == []


async def test_a_stale_holder_cannot_renew_or_release_a_claim_taken_over(
    store_prefix: str,
) -> None:
    url = store_prefix + "&lease=0.3"
    stale, fresh, third = (RedisIdempotencyStore(url) for _ in range(3))
    try:
        assert await stale.claim("k") == "claimed"
        await asyncio.sleep(0.6)  # the holder stalled past its lease
        assert await fresh.claim("k") == "claimed"

        assert await stale.renew("k") is False
        await stale.release("k")  # must not free the claim the fresh holder took
        assert await third.claim("k") == "busy"

        assert await fresh.renew("k") is True
        await fresh.complete("k")
        assert await third.claim("k") == "done"
    finally:
        for store in (stale, fresh, third):
            await store.close()


async def test_an_unreachable_store_fails_the_channel_visibly() -> None:
    notifications = NotificationSystem(idempotency=f"redis://127.0.0.1:{free_port()}/0")
    inbox = notifications.add_channel("email", MemoryChannel())

    result = await notifications.notify(body="x", to="a@b.c", idempotency_key="k")
    unkeyed = await notifications.notify(body="x", to="a@b.c")

    assert isinstance(result["email"].error, NotificationError)
    assert "idempotency store" in str(result["email"].error)
    assert unkeyed.ok and isinstance(inbox, MemoryChannel) and len(inbox.outbox) == 1
    await notifications.close()


def test_store_options_from_url() -> None:
    store = RedisIdempotencyStore("redis://127.0.0.1:6379/2?prefix=app:&ttl=60&lease=10")
    assert (store.url, store.prefix, store.ttl, store.lease) == (
        "redis://127.0.0.1:6379/2",
        "app:",
        60.0,
        10.0,
    )
    assert isinstance(
        NotificationSystem(idempotency="memory://").idempotency, MemoryIdempotencyStore
    )
    for bad in ("redis://h?colour=red", "redis://h?ttl=soon", "ftp://h"):
        with pytest.raises(ConfigurationError):
            NotificationSystem(idempotency=bad)


@pytest.mark.parametrize("query", ["ttl=0", "ttl=-5", "lease=0", "ttl=nan", "lease=inf"])
def test_a_ttl_or_lease_from_the_url_is_checked_like_one_given_as_an_argument(
    query: str,
) -> None:
    # ?ttl=0 became a 1 ms expiry: every key forgotten at once, so idempotency was off
    name = query.split("=")[0]
    with pytest.raises(ConfigurationError, match=f"{name} must be a finite number"):
        RedisIdempotencyStore(f"redis://127.0.0.1:6379/2?{query}")
    with pytest.raises(ConfigurationError, match="must be a finite number"):
        RedisIdempotencyStore("redis://127.0.0.1:6379/2", **{name: 0.0})
