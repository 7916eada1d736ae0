"""NATS: a server without JetStream is named as such, not as nats-py's bare error.

``start()`` against a nats-server run without ``-js`` said ``JetStream is not available
at nats://...: nats: ServiceUnavailableError: code=None err_code=None
description='None'``, and ``delete_stream()`` the same without even the server: nothing
said what to change. The test runs a nats-server of its own without JetStream, on a
free loopback port, and stops it after.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import AsyncIterator

import pytest

from pepperpy.event import EventBus, TransportError
from pepperpy.event.transports.nats import NatsTransport
from tests.bus.credentials import NATS_SERVER
from tests.bus.faultproxy import finishes
from tests.notifications.servers import free_port

pytestmark = pytest.mark.nats

SAID = "the server has no JetStream (nothing answers its API): run nats-server with JetStream"


@pytest.fixture
async def plain_server() -> AsyncIterator[str]:
    """The URL of a nats-server of the test's own, without JetStream."""
    pytest.importorskip("nats")
    port = free_port()
    process = subprocess.Popen(
        [NATS_SERVER, "-a", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:  # listening?
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                await asyncio.sleep(0.05)
            else:
                writer.close()
                await writer.wait_closed()
                break
        yield f"nats://127.0.0.1:{port}"
    finally:
        process.kill()
        process.wait()


async def test_start_says_the_server_has_no_jetstream(plain_server: str) -> None:
    bus = EventBus(transport=NatsTransport(plain_server, connect_timeout=5.0))
    with pytest.raises(TransportError) as failed:
        await finishes(bus.start(), 15)
    await bus.close()
    message = str(failed.value)
    assert message.startswith(f"JetStream is not available at {plain_server}: {SAID}")
    assert "code=None" not in message


async def test_delete_stream_says_it_too_and_names_the_server(plain_server: str) -> None:
    with pytest.raises(TransportError) as failed:
        await finishes(NatsTransport(plain_server).delete_stream(), 15)
    assert str(failed.value) == (
        f"cannot delete stream 'PEPPERPY_EVENTS' at {plain_server}: {SAID} enabled (-js, or "
        "a jetstream block in its configuration), or wait for it to be ready"
    )
