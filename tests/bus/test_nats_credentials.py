"""NATS: credentials the server refuses, at start and while the transport runs.

Before, a wrong password made ``start()`` try again until ``connect_timeout`` was up
(each attempt refused: ``nats: 'Authorization Violation'``); a password changed under
a running service made a WARNING "cannot reconnect to NATS ... yet" (once a minute)
with attempts every ``reconnect_wait``. Now ``start()`` fails at once saying the server
refuses the credentials, and at run time the first refusal is one ERROR naming the
cause and the URL (password hidden), ``health()`` is not ready, the attempts back off
(doubling up to 15 s), and the transport is back once the credentials work again.

The shared server runs without authorization: each test starts a nats-server of its
own, with a user and password, on a free loopback port (its JetStream store in the
test's temporary directory), changes the password with a configuration reload
(``SIGHUP``), and stops it after. The transport reaches it through the fault proxy,
which counts the connection attempts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pepperpy.event import TransportError
from pepperpy.event.transports.nats import NatsTransport
from tests.bus.credentials import AuthServer, backing_off, error_records, jobs_bus, nats_server
from tests.bus.faultproxy import FaultProxy, finishes
from tests.helpers import eventually

pytestmark = pytest.mark.nats

LOGGER = "pepperpy.event.transports.nats"


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[AuthServer]:
    async with nats_server(tmp_path, "one") as made:
        yield made


async def test_a_wrong_password_fails_start_at_once(server: AuthServer) -> None:
    transport = NatsTransport(f"nats://app:wrong-secret@127.0.0.1:{server.port}", stream="CREDS")
    began = time.monotonic()
    with pytest.raises(TransportError) as raised:
        await finishes(transport.start(), 15)
    assert time.monotonic() - began < 2  # not retried until connect_timeout (5 s)
    message = str(raised.value)
    assert f"nats://app:***@127.0.0.1:{server.port}" in message
    assert "wrong-secret" not in message
    assert "the server refuses the credentials" in message
    assert "Authorization Violation" in message
    await transport.close()


@pytest.mark.flaky(reruns=2)
async def test_a_password_changed_while_running_is_one_error_then_recovers(
    server: AuthServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with FaultProxy(server.port) as proxy:
        transport = NatsTransport(
            f"nats://app:one@127.0.0.1:{proxy.port}", stream="CREDS", reconnect_wait=0.2
        )
        bus, got = jobs_bus(transport)
        try:
            async with bus:
                await bus.publish("jobs.run", 0)
                await eventually(lambda: got == [0], timeout=10)
                server.change_password("two")  # the server disconnects the client
                await eventually(lambda: bool(error_records(caplog)), timeout=20)
                refused_at, attempts = time.monotonic(), proxy.accepted
                await backing_off(proxy, refused_at, attempts)
                health = bus.health()
                assert not health.ready
                assert health.outage is not None
                assert health.outage >= time.monotonic() - refused_at
                server.change_password("one")
                await eventually(lambda: bus.health().ready, timeout=30)
                await bus.publish("jobs.run", 1)
                await eventually(lambda: got == [0, 1], timeout=20)
        finally:  # the stream is in the server's store, in the test's directory
            await finishes(transport.close(), 15)
    [error] = error_records(caplog)
    assert error.name == LOGGER
    message = error.getMessage()
    assert f"NATS at nats://app:***@127.0.0.1:{proxy.port} refuses the transport's" in message
    assert "Authorization Violation" in message
    assert "check the user and password (or token) in its URL" in message
    assert "backing off up to 15s" in message
    assert ":one@" not in message
    warnings = [
        r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING
    ]
    assert len(warnings) == 1 and warnings[0].startswith("disconnected from NATS")
    back = [r.getMessage() for r in caplog.records if r.name == LOGGER and "reconnected" in r.msg]
    assert len(back) == 1
