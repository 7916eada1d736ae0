"""A Redis idempotency store reached over a Unix socket (``unix:///path``).

The store took its options out of the URL and rebuilt it for redis-py, which lost the
``//`` of ``unix:///path`` (``unix:/path``): redis-py refuses that form, so every keyed
delivery failed (a ``NotificationError``, a dead letter) and nothing was sent.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pepperpy.event import MemoryChannel, NotificationSystem, RetryPolicy

pytestmark = pytest.mark.redis


@pytest.fixture
def redis_socket(tmp_path: Path) -> Iterator[Path]:
    """A redis-server of our own, listening on a Unix socket only."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    path = tmp_path / "redis.sock"
    command = ["redis-server", "--port", "0", "--unixsocket", str(path), "--save", ""]
    command += ["--appendonly", "no", "--dir", str(tmp_path)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not path.exists():
            assert time.monotonic() < deadline, "private redis-server did not start"
            time.sleep(0.05)
        yield path
    finally:
        process.kill()
        process.wait(timeout=10)


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
