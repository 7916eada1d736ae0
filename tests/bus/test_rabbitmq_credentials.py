"""RabbitMQ: credentials the broker refuses, at start and while the transport runs.

A wrong password fails ``start()`` at once, saying so. A password changed under a
running service shows when the connection is lost and each attempt to reconnect is
refused (``ACCESS_REFUSED``): before, every attempt was a WARNING of aio-pika's, one per
``reconnect_interval``, beside a transport WARNING that spoke of a lost connection only.
Now the first refusal is one ERROR of the transport's naming the cause and the URL
(password hidden), ``health()`` is not ready, the attempts back off (doubling up to
15 s), and the transport is back once the password works again.

Each test makes a user of its own (``rabbitmqctl add_user``) and deletes it after; the
connection goes through the fault proxy, which resets it to make it reconnect.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from pepperpy.event import EventBus, TransportError
from pepperpy.event.transports.rabbitmq import RabbitMQTransport
from tests.bus.faultproxy import FaultProxy, finishes
from tests.conftest import unique_name
from tests.helpers import eventually

pytestmark = pytest.mark.rabbitmq

LOGGER = "pepperpy.event.transports.rabbitmq"
ROBUST_LOGGER = "aio_pika.robust_connection"


def rabbitmqctl(*arguments: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *arguments], check=True, capture_output=True, timeout=30)


@pytest.fixture
def user(amqp_url: str) -> Iterator[str]:
    """A user of the test's own, password ``one``, with every permission on ``/``."""
    if shutil.which("rabbitmqctl") is None:
        pytest.skip("rabbitmqctl is not installed")
    name = unique_name("pep_user")
    rabbitmqctl("add_user", name, "one")
    try:
        rabbitmqctl("set_permissions", "-p", "/", name, ".*", ".*", ".*")
        yield name
    finally:
        rabbitmqctl("delete_user", name)


@pytest.fixture
async def proxy(amqp_url: str) -> AsyncIterator[FaultProxy]:
    async with FaultProxy(5672) as made:
        yield made


async def test_a_wrong_password_fails_start_at_once(user: str) -> None:
    transport = RabbitMQTransport(
        f"amqp://{user}:wrong-secret@127.0.0.1:5672/", exchange=unique_name("pep.creds")
    )
    began = time.monotonic()
    with pytest.raises(TransportError) as raised:
        await finishes(transport.start(), 15)
    assert time.monotonic() - began < 3  # not retried until connect_timeout (10 s)
    message = str(raised.value)
    assert f"amqp://{user}:***@127.0.0.1:5672/" in message
    assert "wrong-secret" not in message
    assert "ACCESS_REFUSED" in message
    assert "check the user and password in the URL" in message
    await transport.close()


#: how each test takes the user's access away, and gives it back
CHANGES = {
    "password": (("change_password", "{user}", "two"), ("change_password", "{user}", "one")),
    "permissions": (
        ("clear_permissions", "-p", "/", "{user}"),
        ("set_permissions", "-p", "/", "{user}", ".*", ".*", ".*"),
    ),
}


@pytest.mark.flaky(reruns=2)
@pytest.mark.parametrize("change", sorted(CHANGES))
async def test_access_taken_away_while_running_is_one_error_then_recovers(
    user: str, proxy: FaultProxy, caplog: pytest.LogCaptureFixture, change: str
) -> None:
    take, give = ([part.format(user=user) for part in command] for command in CHANGES[change])
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, logger=ROBUST_LOGGER)
    url = f"amqp://{user}:one@127.0.0.1:{proxy.port}/"
    transport = RabbitMQTransport(
        url,
        exchange=unique_name("pep.creds"),
        partitions=1,
        reconnect_interval=0.2,
        connect_timeout=1.0,
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
            rabbitmqctl(*take)
            proxy.drop()  # the connection is lost; each attempt to reconnect is refused
            await eventually(lambda: bool(errors()), timeout=20)
            refused_at, attempts = time.monotonic(), proxy.accepted
            with pytest.raises(TransportError) as raised:  # within connect_timeout
                await bus.publish("jobs.run", 9)
            assert "the broker refuses the transport's connection" in str(raised.value)
            await asyncio.sleep(4 - (time.monotonic() - refused_at))
            # backing off (0.4, 0.8, 1.6, 3.2 s...), not every 0.2 s (20 attempts)
            assert proxy.accepted - attempts <= 5, proxy.accepted - attempts
            health = bus.health()
            assert not health.ready
            assert health.outage is not None and health.outage >= time.monotonic() - refused_at
            rabbitmqctl(*give)
            await eventually(lambda: bus.health().ready, timeout=30)
            await bus.publish("jobs.run", 1)
            await eventually(lambda: got == [0, 1], timeout=20)
    finally:
        rabbitmqctl(*give)  # again, if the test failed before: delete_topology() logs in
        await finishes(transport.close(), 15)
        await finishes(transport.delete_topology(), 15)
    [error] = errors()
    assert error.name == LOGGER
    message = error.getMessage()
    assert f"RabbitMQ at amqp://{user}:***@127.0.0.1:{proxy.port}/ refuses" in message
    if change == "password":
        assert "ACCESS_REFUSED" in message
        assert "check the user and password in its URL" in message
    else:
        assert "refused to open virtual host '/'" in message
        assert "rabbitmqctl list_user_permissions" in message
    assert "backing off up to 15s" in message
    assert ":one@" not in message
    # aio-pika's WARNING per refused attempt is DEBUG now, with a note saying why
    attempts_logged = [
        r
        for r in caplog.records
        if r.name == ROBUST_LOGGER and r.getMessage().startswith("Connection attempt to")
    ]
    assert attempts_logged
    assert {r.levelno for r in attempts_logged} == {logging.DEBUG}
    assert all("logged the refusal as an ERROR" in r.getMessage() for r in attempts_logged)
    back = [
        r.getMessage() for r in caplog.records if r.name == LOGGER and "is back" in r.getMessage()
    ]
    assert len(back) == 1 and "the broker had refused" in back[0]
    assert transport._connection is None  # closed
