"""Cancelling a notify() at its await points: no idempotency claim is left to block the
retry, no rate-limit place is kept, and a cancelled call never reports success.

Each test blocks the awaited call on an asyncio.Event, cancels the caller there, then
inspects the state (Redis itself for the shared idempotency store).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from pepperpy.event import MemoryChannel, Notification, NotificationSystem, RetryPolicy
from pepperpy.event.notifications import RedisIdempotencyStore
from tests.conftest import unique_name
from tests.helpers import delete_redis_keys


@pytest.fixture
async def store_url(redis_url: str) -> AsyncIterator[str]:
    prefix = unique_name("pepcancel") + ":"
    yield f"{redis_url}?prefix={prefix}"
    await delete_redis_keys(redis_url, f"{prefix}*")


async def _raw(store: RedisIdempotencyStore, key: str) -> Any:
    """What Redis holds for ``key`` (None: no claim, b"done", or a pending claim)."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(store.url)
    try:
        return await client.get(store.prefix + key)
    finally:
        await client.aclose()


def _only_key(store: RedisIdempotencyStore, inbox: MemoryChannel) -> str:
    [notification] = inbox.outbox
    assert notification.key is not None
    return notification.key


class _CancelledAsItSends(MemoryChannel):
    """Delivers, and the caller's cancellation arrives just as the send returns."""

    async def send(self, notification: Notification) -> None:
        await super().send(notification)
        task = asyncio.current_task()
        assert task is not None
        task.cancel()


class _Blocking(MemoryChannel):
    """Waits for ``gate`` before delivering; ``entered`` is set when a send begins."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = asyncio.Event()
        self.gate = asyncio.Event()

    async def send(self, notification: Notification) -> None:
        self.entered.set()
        await self.gate.wait()
        await super().send(notification)


@pytest.mark.redis
async def test_cancelled_while_claiming_leaves_no_claim_behind(store_url: str) -> None:
    """The claim's SET reached Redis; the caller is cancelled before its answer is used.
    Before, the claim stayed 'pending' for the lease (300 s): every retry waited."""
    system = NotificationSystem(idempotency=store_url, retry_policy=RetryPolicy.NONE)
    inbox = MemoryChannel()
    system.add_channel("inbox", inbox)
    store = system.idempotency
    assert isinstance(store, RedisIdempotencyStore)
    claimed, gate = asyncio.Event(), asyncio.Event()
    real = store._call

    async def call(what: str, *args: Any, **kwargs: Any) -> Any:
        answer = await real(what, *args, **kwargs)
        if what == "set" and kwargs.get("nx"):
            claimed.set()
            await gate.wait()
        return answer

    store._call = call  # type: ignore[method-assign]
    try:
        task = asyncio.create_task(
            system.notify("inbox", body="x", to="a@b.c", idempotency_key="k")
        )
        await claimed.wait()
        [name] = await _keys(store)
        assert (await _raw(store, name)).startswith(b"pending:")
        task.cancel()
        gate.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await _raw(store, name) is None, "the cancelled call's claim is still held"
        assert inbox.outbox == []
        store._call = real  # type: ignore[method-assign]
        retry = await system.notify("inbox", body="x", to="a@b.c", idempotency_key="k")
        assert retry["inbox"].status == "sent" and len(inbox.outbox) == 1
    finally:
        await system.close()


async def _keys(store: RedisIdempotencyStore) -> list[str]:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(store.url)
    try:
        found = [k async for k in client.scan_iter(match=store.prefix + "*")]
    finally:
        await client.aclose()
    return [k.decode()[len(store.prefix) :] for k in found]


@pytest.mark.redis
async def test_cancelled_as_the_send_completes_records_the_key_delivered(store_url: str) -> None:
    """The message went out and the caller is cancelled before the key is recorded.
    Before, the claim stayed pending (the retry waited for the lease, then sent again)."""
    system = NotificationSystem(idempotency=store_url, retry_policy=RetryPolicy.NONE)
    inbox = _CancelledAsItSends()
    system.add_channel("inbox", inbox)
    store = system.idempotency
    assert isinstance(store, RedisIdempotencyStore)
    try:
        task = asyncio.create_task(
            system.notify("inbox", body="x", to="a@b.c", idempotency_key="k")
        )
        with pytest.raises(asyncio.CancelledError):  # never reported as a success
            await task
        key = _only_key(store, inbox)
        assert await _raw(store, key) == b"done"
        retry = await system.notify("inbox", body="x", to="a@b.c", idempotency_key="k")
        assert retry["inbox"].status == "duplicate" and len(inbox.outbox) == 1
    finally:
        await system.close()


async def test_cancelled_as_the_send_completes_in_memory_too() -> None:
    system = NotificationSystem(retry_policy=RetryPolicy.NONE)
    inbox = _CancelledAsItSends()
    system.add_channel("inbox", inbox)
    try:
        task = asyncio.create_task(
            system.notify("inbox", body="x", to="a@b.c", idempotency_key="k")
        )
        with pytest.raises(asyncio.CancelledError):
            await task
        retry = await system.notify("inbox", body="x", to="a@b.c", idempotency_key="k")
        assert retry["inbox"].status == "duplicate" and len(inbox.outbox) == 1
    finally:
        await system.close()


@pytest.mark.redis
@pytest.mark.parametrize("memory", [True, False], ids=["memory", "redis"])
async def test_cancelled_while_sending_releases_the_claim(store_url: str, memory: bool) -> None:
    system = NotificationSystem(
        idempotency=None if memory else store_url, retry_policy=RetryPolicy.NONE
    )
    inbox = _Blocking()
    system.add_channel("inbox", inbox)
    try:
        task = asyncio.create_task(
            system.notify("inbox", body="x", to="a@b.c", idempotency_key="k")
        )
        await inbox.entered.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        if not memory:
            store = system.idempotency
            assert isinstance(store, RedisIdempotencyStore)
            assert await _keys(store) == []
        inbox.gate.set()
        retry = await system.notify("inbox", body="x", to="a@b.c", idempotency_key="k")
        assert retry["inbox"].status == "sent" and len(inbox.outbox) == 1
    finally:
        await system.close()


async def test_cancelled_while_waiting_for_the_rate_limit_gives_its_place_back() -> None:
    system = NotificationSystem(retry_policy=RetryPolicy.NONE)
    inbox = MemoryChannel()
    system.add_channel("inbox", inbox, rate_limit="1/hour")
    limit = system._routes["inbox"].rate_limit
    assert limit is not None
    try:
        assert (await system.notify("inbox", body="first", to="a@b.c")).ok
        starts, writes = limit._starts.tat, limit._writes.tat
        task = asyncio.create_task(system.notify("inbox", body="second", to="a@b.c"))
        while not limit._starts.waiters:  # noqa: ASYNC110 - the line has no hook
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not limit._starts.waiters and not limit._writes.waiters
        assert (limit._starts.tat, limit._writes.tat) == (starts, writes)
        assert [n.body for n in inbox.outbox] == ["first"]
    finally:
        await system.close()
