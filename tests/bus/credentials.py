"""What the bus's credential and health-reason tests share: a RabbitMQ user of the test's
own (``rabbitmqctl``), the ways its access is taken away and given back, a nats-server
with a user and password of its own, and the check that a network outage is reported
as ``"unreachable"`` until the connection is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from pepperpy.event import EventBus
from tests.bus.faultproxy import FaultProxy
from tests.conftest import unique_name
from tests.helpers import eventually

__all__ = [
    "NATS_SERVER",
    "RABBITMQ_CHANGES",
    "AuthServer",
    "nats_server",
    "network_outage",
    "rabbitmq_user",
    "rabbitmqctl",
]

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


# -- NATS ---------------------------------------------------------------------------------

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
