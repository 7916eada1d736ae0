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

import logging
import time
from collections.abc import Iterator

import pytest

from pepperpy.event import TransportError
from pepperpy.event.transports.rabbitmq import RabbitMQTransport
from tests.bus.credentials import (
    RABBITMQ_CHANGES,
    ROBUST_LOGGER,
    backing_off,
    demoted_attempts,
    error_records,
    jobs_bus,
    rabbitmq_change,
    rabbitmq_through,
    rabbitmq_user,
    rabbitmqctl,
)
from tests.bus.faultproxy import FaultProxy, finishes
from tests.conftest import unique_name
from tests.helpers import eventually

pytestmark = pytest.mark.rabbitmq

LOGGER = "pepperpy.event.transports.rabbitmq"
PASSWORD = "s3cret-one"


@pytest.fixture
def user(amqp_url: str) -> Iterator[str]:
    """A user of the test's own, password :data:`PASSWORD`, with every permission on ``/``."""
    with rabbitmq_user(PASSWORD) as name:
        yield name


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


@pytest.mark.flaky(reruns=2)
@pytest.mark.parametrize("change", sorted(RABBITMQ_CHANGES))
async def test_access_taken_away_while_running_is_one_error_then_recovers(
    user: str, proxy: FaultProxy, caplog: pytest.LogCaptureFixture, change: str
) -> None:
    take, give = rabbitmq_change(change, user, PASSWORD, "s3cret-two")
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, logger=ROBUST_LOGGER)
    transport = rabbitmq_through(proxy, user, PASSWORD, "pep.creds")
    bus, got = jobs_bus(transport)
    try:
        async with bus:
            await bus.publish("jobs.run", 0)
            await eventually(lambda: got == [0], timeout=10)
            rabbitmqctl(*take)
            proxy.drop()  # the connection is lost; each attempt to reconnect is refused
            await eventually(lambda: bool(error_records(caplog)), timeout=20)
            refused_at, attempts = time.monotonic(), proxy.accepted
            with pytest.raises(TransportError) as raised:  # within connect_timeout
                await bus.publish("jobs.run", 9)
            assert "the broker refuses the transport's connection" in str(raised.value)
            await backing_off(proxy, refused_at, attempts)
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
    [error] = error_records(caplog)
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
    assert "s3cret" not in message
    # aio-pika's WARNING per refused attempt is DEBUG now, with a note saying why
    attempts_logged = demoted_attempts(caplog)
    assert all("logged the refusal as an ERROR" in r.getMessage() for r in attempts_logged)
    back = [
        r.getMessage() for r in caplog.records if r.name == LOGGER and "is back" in r.getMessage()
    ]
    assert len(back) == 1 and "the broker had refused" in back[0]
    assert transport._connection is None  # closed
