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

import asyncio
import logging
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pepperpy.event import EventBus, TransportError
from pepperpy.event.transports.nats import NatsTransport
from tests.bus.faultproxy import FaultProxy, finishes
from tests.helpers import eventually

pytestmark = pytest.mark.nats

LOGGER = "pepperpy.event.transports.nats"
NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class AuthServer:
    """A nats-server with JetStream and one user, whose password can be changed."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.config = directory / "nats.conf"
        self.store = directory / "jetstream"
        self.process: subprocess.Popen[bytes] | None = None

    def write(self, password: str) -> None:
        self.config.write_text(
            f'listen: "127.0.0.1:{self.port}"\n'
            f'jetstream {{ store_dir: "{self.store}" }}\n'
            f'authorization {{ user: app, password: "{password}" }}\n'
        )

    async def start(self, password: str) -> None:
        self.write(password)
        self.process = subprocess.Popen(
            [NATS_SERVER, "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:  # listening?
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise
                await asyncio.sleep(0.05)
            else:
                writer.close()
                await writer.wait_closed()
                return

    def change_password(self, password: str) -> None:
        """Rewrite the configuration and make the server reload it: clients whose
        credentials no longer work are disconnected."""
        assert self.process is not None
        self.write(password)
        self.process.send_signal(signal.SIGHUP)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[AuthServer]:
    if not Path(NATS_SERVER).exists():
        pytest.skip("nats-server is not installed")
    made = AuthServer(tmp_path)
    try:
        await made.start("one")
        yield made
    finally:
        made.stop()


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
        got: list[int] = []
        bus = EventBus(transport=transport)
        bus.subscribe("jobs.*")(lambda event: got.append(event.data))

        def errors() -> list[logging.LogRecord]:
            return [r for r in caplog.records if r.levelno >= logging.ERROR]

        try:
            async with bus:
                await bus.publish("jobs.run", 0)
                await eventually(lambda: got == [0], timeout=10)
                server.change_password("two")  # the server disconnects the client
                await eventually(lambda: bool(errors()), timeout=20)
                refused_at, attempts = time.monotonic(), proxy.accepted
                await asyncio.sleep(4)
                # backing off (0.4, 0.8, 1.6, 3.2 s...), not every 0.2 s (20 attempts)
                assert proxy.accepted - attempts <= 5, proxy.accepted - attempts
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
    [error] = errors()
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
