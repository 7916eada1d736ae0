"""A system (or channel, or idempotency store) dropped without close(): it is collected,
its per-loop keeper task ends on its loop after closing the client, and a ResourceWarning
names what was left open. Closed ones warn nothing.

Before, each keeper task held its owner and was held only by it: collecting a dropped
system destroyed the keeper while pending ("Task was destroyed but it is pending!") and
left the HTTP or Redis client unclosed.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import re
import weakref
from collections.abc import AsyncIterator

import pytest

from pepperpy.event import MemoryChannel, NotificationSystem, WebhookChannel
from pepperpy.event.notifications import RedisIdempotencyStore
from tests.conftest import unique_name
from tests.helpers import delete_redis_keys, destroyed_pending, dropping, keeper_tasks
from tests.notifications.servers import HttpSink


async def test_a_dropped_system_closes_its_webhook_client_and_warns(
    http_server: HttpSink, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="asyncio")
    system = NotificationSystem()
    channel = system.add_channel("hook", http_server.url + "/hook")
    assert (await system.notify("hook", body="hi")).ok
    [keeper] = keeper_tasks()
    client = channel._clients.here()  # type: ignore[attr-defined]
    owner = weakref.ref(system)
    held = weakref.ref(keeper)
    with dropping(owner) as messages:
        del system, channel, keeper
    [message] = messages
    assert re.search(r"^unclosed NotificationSystem .*WebhookChannel\(http://", message), message

    keeper = held()
    assert keeper is not None, "the keeper task was destroyed with its owner"
    await asyncio.wait((keeper,))
    assert keeper.cancelled()
    assert client.is_closed
    del keeper
    gc.collect()
    assert destroyed_pending(caplog.records) == []


async def test_a_dropped_channel_names_itself(
    http_server: HttpSink, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="asyncio")
    channel = WebhookChannel(http_server.url + "/mine")
    system = NotificationSystem()
    system.add_channel("hook", channel)
    assert (await system.notify("hook", body="hi")).ok
    held = weakref.ref(keeper_tasks()[0])
    owner = weakref.ref(channel)
    with dropping(owner) as messages:  # the system did not make the channel: it names it
        del system, channel
    [message] = messages
    assert re.search(r"^unclosed WebhookChannel\(http://.*/mine\) was dropped", message), message
    keeper = held()
    assert keeper is not None
    await asyncio.wait((keeper,))
    assert keeper.cancelled()
    assert destroyed_pending(caplog.records) == []


@pytest.fixture
async def store_url(redis_url: str) -> AsyncIterator[str]:
    prefix = unique_name("pepdropped") + ":"
    yield f"{redis_url}?prefix={prefix}"
    await delete_redis_keys(redis_url, f"{prefix}*")


@pytest.mark.redis
async def test_a_dropped_system_closes_its_redis_idempotency_client(
    store_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="asyncio")
    system = NotificationSystem(idempotency=store_url)
    system.add_channel("inbox", MemoryChannel())
    result = await system.notify("inbox", body="hi", to="a@b.c", idempotency_key=unique_name())
    assert result.ok
    [keeper] = keeper_tasks()
    store = system.idempotency
    assert isinstance(store, RedisIdempotencyStore)
    client = store._clients.here()
    closed: list[bool] = []
    original = client.aclose

    async def aclose() -> None:
        closed.append(True)
        await original()

    client.aclose = aclose
    owner = weakref.ref(system)
    held = weakref.ref(keeper)
    with dropping(owner) as messages:
        del system, store, keeper, result
    [message] = messages
    assert re.search(r"^unclosed NotificationSystem .*RedisIdempotencyStore\(", message), message
    keeper = held()
    assert keeper is not None
    await asyncio.wait((keeper,))
    assert keeper.cancelled() and closed == [True]
    assert destroyed_pending(caplog.records) == []


async def test_a_closed_system_warns_nothing_and_leaves_no_keeper(
    http_server: HttpSink, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="asyncio")
    system = NotificationSystem()
    system.add_channel("hook", http_server.url + "/hook")
    assert (await system.notify("hook", body="hi")).ok
    [keeper] = keeper_tasks()
    await system.close()
    await asyncio.wait((keeper,))
    owner = weakref.ref(system)
    with dropping(owner) as messages:
        del system
    assert messages == []
    assert keeper_tasks() == [] and destroyed_pending(caplog.records) == []


async def test_a_system_that_never_connected_warns_nothing() -> None:
    system = NotificationSystem()
    system.add_channel("hook", "http://127.0.0.1:9/never")
    owner = weakref.ref(system)
    with dropping(owner) as messages:
        del system
    assert messages == []
