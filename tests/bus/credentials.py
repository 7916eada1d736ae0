"""What the bus's credential and health-reason tests share: a RabbitMQ user of the test's
own (``rabbitmqctl``), the ways its access is taken away and given back, a nats-server
with a user and password of its own, and the check that a network outage is reported
as ``"unreachable"`` until the connection is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pepperpy.event import EventBus
from pepperpy.event.transports.base import Transport
from pepperpy.event.transports.rabbitmq import RabbitMQTransport
from tests.bus.faultproxy import FaultProxy
from tests.conftest import unique_name
from tests.helpers import eventually
from tests.notifications.servers import free_port

__all__ = [
    "NATS_SERVER",
    "RABBITMQ_CHANGES",
    "ROBUST_LOGGER",
    "AuthServer",
    "backing_off",
    "demoted_attempts",
    "error_records",
    "jobs_bus",
    "nats_server",
    "network_outage",
    "rabbitmq_change",
    "rabbitmq_refusal",
    "rabbitmq_through",
    "rabbitmq_user",
    "rabbitmqctl",
]


# -- a bus whose broker refuses it ----------------------------------------------------------


def jobs_bus(transport: Transport) -> tuple[EventBus, list[Any]]:
    """A bus on ``transport`` whose subscription to ``jobs.*`` keeps each event's data."""
    got: list[Any] = []
    bus = EventBus(transport=transport)
    bus.subscribe("jobs.*")(lambda event: got.append(event.data))
    return bus, got


def error_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR]


async def backing_off(proxy: FaultProxy, refused_at: float, attempts: int) -> None:
    """Wait until 4 s after ``refused_at``, when ``proxy`` had accepted ``attempts``
    connections: refused attempts back off (0.4, 0.8, 1.6, 3.2 s...), so at most 5 more
    came meanwhile, not one every 0.2 s (20)."""
    await asyncio.sleep(4 - (time.monotonic() - refused_at))
    assert proxy.accepted - attempts <= 5, proxy.accepted - attempts


# -- RabbitMQ -----------------------------------------------------------------------------


def rabbitmqctl(*arguments: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *arguments], check=True, capture_output=True, timeout=30)


@contextlib.contextmanager
def rabbitmq_user(password: str, vhost: str = "/") -> Iterator[str]:
    """A RabbitMQ user of the test's own, with ``password`` and every permission on
    ``vhost``; deleted after (skips the test without ``rabbitmqctl``)."""
    if shutil.which("rabbitmqctl") is None:
        pytest.skip("rabbitmqctl is not installed")
    name = unique_name("pep_user")
    rabbitmqctl("add_user", name, password)
    try:
        rabbitmqctl("set_permissions", "-p", vhost, name, ".*", ".*", ".*")
        yield name
    finally:
        rabbitmqctl("delete_user", name)


#: how a test takes the user's access to ``/`` away, and gives it back (``{user}``: the
#: user's name, ``{password}``: its password, ``{other}``: another)
RABBITMQ_CHANGES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "password": (
        ("change_password", "{user}", "{other}"),
        ("change_password", "{user}", "{password}"),
    ),
    "permissions": (
        ("clear_permissions", "-p", "/", "{user}"),
        ("set_permissions", "-p", "/", "{user}", ".*", ".*", ".*"),
    ),
}


def rabbitmq_change(
    change: str, user: str, password: str, other: str
) -> tuple[list[str], list[str]]:
    """The ``rabbitmqctl`` arguments that take ``user``'s access away (``change``, a key
    of :data:`RABBITMQ_CHANGES`) and that give it back."""
    take, give = RABBITMQ_CHANGES[change]
    names = {"user": user, "password": password, "other": other}
    return [part.format(**names) for part in take], [part.format(**names) for part in give]


def rabbitmq_through(proxy: FaultProxy, user: str, password: str, prefix: str) -> RabbitMQTransport:
    """A RabbitMQTransport of ``user`` (with ``password``) reaching the broker through
    ``proxy``: one partition, reconnecting every 0.2 s, waiting at most 1 s for the
    connection, on an exchange of its own named from ``prefix``."""
    return RabbitMQTransport(
        f"amqp://{user}:{password}@127.0.0.1:{proxy.port}/",
        exchange=unique_name(prefix),
        partitions=1,
        reconnect_interval=0.2,
        connect_timeout=1.0,
    )


#: aio-pika's logger for its robust connection's reconnection attempts
ROBUST_LOGGER = "aio_pika.robust_connection"


def demoted_attempts(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """aio-pika's records of the refused attempts to reconnect (``Connection attempt to
    ...``): there are some, and each is DEBUG (not the WARNING per attempt it was)."""
    attempts = [
        r
        for r in caplog.records
        if r.name == ROBUST_LOGGER and r.getMessage().startswith("Connection attempt to")
    ]
    assert attempts
    assert {r.levelno for r in attempts} == {logging.DEBUG}
    return attempts


def rabbitmq_refusal(bus: EventBus, shown: str) -> str:
    """``bus``'s ``health()`` while RabbitMQ at ``shown`` (the URL as the transport shows
    it, password hidden) refuses the transport: not ready, an outage, and a message
    saying so, which is returned."""
    health = bus.health()
    assert not health.ready and health.outage is not None
    message = health.outage_message
    assert message is not None
    assert message.startswith(f"RabbitMQ at {shown} refuses the transport's connection: "), message
    return message


# -- NATS ---------------------------------------------------------------------------------

NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"


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


@contextlib.asynccontextmanager
async def nats_server(directory: Path, password: str) -> AsyncIterator[AuthServer]:
    """An :class:`AuthServer` in ``directory`` whose user ``app`` has ``password``,
    stopped after (skips the test without ``nats-server``)."""
    if not Path(NATS_SERVER).exists():
        pytest.skip("nats-server is not installed")
    made = AuthServer(directory)
    try:
        await made.start(password)
        yield made
    finally:
        made.stop()


# -- a network outage ---------------------------------------------------------------------


async def network_outage(
    bus: EventBus,
    proxy: FaultProxy,
    said: Callable[[str], bool],
    *,
    until: Callable[[EventBus], bool] = lambda bus: bus.health().outage is not None,
) -> None:
    """Cut ``bus``'s connection through ``proxy`` and refuse new ones: once ``until``
    (the outage is seen), ``health()`` must say ``"unreachable"``, with a message
    ``said`` accepts, and not ready; healed, ready again with no reason."""
    proxy.refuse()
    proxy.drop()
    try:
        await eventually(lambda: until(bus), timeout=15)
        health = bus.health()
        assert health.outage_reason == "unreachable"
        assert health.outage_message is not None
        assert said(health.outage_message), health.outage_message
        assert not health.ready
    finally:
        proxy.heal()
    await eventually(lambda: bus.health().ready, timeout=15)
    assert bus.health().outage_reason is None
