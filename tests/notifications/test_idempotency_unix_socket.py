"""A Redis idempotency store reached over a Unix socket (``unix:///path``).

The store took its options out of the URL and rebuilt it for redis-py, which lost the
``//`` of ``unix:///path`` (``unix:/path``): redis-py refuses that form, so every keyed
delivery failed (a ``NotificationError``, a dead letter) and nothing was sent.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pepperpy.event import MemoryChannel, NotificationSystem, RetryPolicy

pytestmark = pytest.mark.redis


async def test_a_key_is_sent_once_through_a_unix_socket_store(redis_socket: Path) -> None:
    url = f"unix://{redis_socket}?prefix=notify:&lease=5"
    inboxes = [MemoryChannel(), MemoryChannel()]
    systems = [NotificationSystem(idempotency=url, retry_policy=RetryPolicy.NONE) for _ in inboxes]
    for system, inbox in zip(systems, inboxes, strict=True):
        system.add_channel("email", inbox)
    try:
        first = await systems[0].notify(body="x", to="a@b.c", idempotency_key="order-7")
        second = await systems[1].notify(body="x", to="a@b.c", idempotency_key="order-7")
    finally:
        for system in systems:
            await system.close()

    assert first["email"].status == "sent", first["email"].error
    assert second["email"].status == "duplicate"
    assert len(inboxes[0].outbox) == 1 and not inboxes[1].outbox
