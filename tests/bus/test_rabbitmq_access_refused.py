"""RabbitMQ: an exchange or queue the user may not declare is a refusal of access.

The transport tells a refusal by the driver's exception class and the broker's reply
code, not by the wording of the reply. A user whose permissions do not let it declare
the exchange (a channel closed with reply code 403, aiormq's ``ChannelAccessRefused``)
is refused access: before, ``start()`` asked whether an exchange of another type had
the name, and once running, a reconnection whose restore of the channels was refused
was reported as the broker being unreachable (``outage_reason``), with a WARNING of
aio-pika's per attempt, every ``reconnect_interval``. Now ``start()`` says the broker
refuses the user access, and at run time it is ``"access refused"``: one ERROR, the
attempts backing off, until the permission is given back.

Each test makes a user of its own (``rabbitmqctl``) and deletes it after.
"""

from __future__ import annotations

import logging
import time

import pytest

from pepperpy.event import TransportError
from pepperpy.event.transports.base import ACCESS_REFUSED
from pepperpy.event.transports.rabbitmq import RabbitMQTransport
from pepperpy.event.transports.rabbitmq._refusals import refusal
from tests.bus.credentials import (
    ROBUST_LOGGER,
    backing_off,
    demoted_attempts,
    error_records,
    jobs_bus,
    rabbitmq_refusal,
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


def no_configure(user: str) -> tuple[str, ...]:
    """Permissions on ``/`` that let ``user`` in, but declare nothing (configure: none)."""
    return ("set_permissions", "-p", "/", user, "^$", ".*", ".*")


def every_permission(user: str) -> tuple[str, ...]:
    return ("set_permissions", "-p", "/", user, ".*", ".*", ".*")


async def test_an_exchange_the_user_may_not_declare_fails_start_as_refused_access(
    amqp_url: str,
) -> None:
    exchange = unique_name("pep.noconf")
    with rabbitmq_user(PASSWORD) as user:
        rabbitmqctl(*no_configure(user))
        transport = RabbitMQTransport(
            f"amqp://{user}:{PASSWORD}@127.0.0.1:5672/", exchange=exchange
        )
        with pytest.raises(TransportError) as raised:
            await finishes(transport.start(), 15)
        await transport.close()
    message = str(raised.value)
    assert message.startswith(
        f"cannot declare topic exchange {exchange!r}: the broker refuses user {user!r} access: "
    )
    assert "ACCESS_REFUSED" in message and "(reply code 403)" in message
    assert "rabbitmqctl list_user_permissions" in message
    assert "another type or durability" not in message  # not a mismatch of the exchange


def test_a_refusal_is_told_by_class_and_reply_code_not_by_its_wording() -> None:
    from aiormq.exceptions import ChannelAccessRefused, ChannelNotFoundEntity, ConnectionClosed

    url = "amqp://app:pw@127.0.0.1:5672/"
    # a reply in other words (another release, a plugin's): still a 403 on the channel
    said = refusal(url, ChannelAccessRefused("Zugriff verweigert für Benutzer 'app'"))
    assert said is not None and said.kind == ACCESS_REFUSED
    assert "Zugriff verweigert" in said.reason and "(reply code 403)" in said.reason
    # the words of a refusal on something that is none: not a refusal
    assert refusal(url, ChannelNotFoundEntity("ACCESS_REFUSED - no queue 'q'")) is None
    assert refusal(url, ConnectionClosed(320, "ACCESS_REFUSED - forced")) is None
    assert refusal(url, ConnectionError("Expected Connection.OpenOk, Connection.Close")) is None


@pytest.mark.flaky(reruns=2)
async def test_a_reconnection_refused_the_exchange_is_access_refused_until_it_is_allowed(
    proxy: FaultProxy, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, logger=ROBUST_LOGGER)
    with rabbitmq_user(PASSWORD) as user:
        transport = rabbitmq_through(proxy, user, PASSWORD, "pep.noconf")
        bus, got = jobs_bus(transport)
        try:
            async with bus:
                await bus.publish("jobs.run", 0)
                await eventually(lambda: got == [0], timeout=10)
                rabbitmqctl(*no_configure(user))
                proxy.drop()  # each reconnection gets in, and is refused the exchange
                await eventually(lambda: bus.health().outage_reason == ACCESS_REFUSED, timeout=20)
                refused_at, attempts = time.monotonic(), proxy.accepted
                shown = f"amqp://{user}:***@127.0.0.1:{proxy.port}/"
                message = rabbitmq_refusal(bus, shown)
                assert message.startswith(
                    f"RabbitMQ at {shown} refuses the transport's connection: restoring the "
                    f"channels: the broker refuses user {user!r} access: "
                )
                assert "ACCESS_REFUSED" in message and PASSWORD not in message
                await backing_off(proxy, refused_at, attempts)
                rabbitmqctl(*every_permission(user))
                await eventually(lambda: bus.health().ready, timeout=30)
                assert bus.health().outage_reason is None
                await bus.publish("jobs.run", 1)
                await eventually(lambda: got == [0, 1], timeout=20)
        finally:
            rabbitmqctl(*every_permission(user))  # again: delete_topology() declares nothing
            await finishes(transport.close(), 15)
            await finishes(transport.delete_topology(), 15)
    errors = error_records(caplog)
    assert [r.name for r in errors] == [LOGGER], [r.getMessage() for r in errors]
    assert "rabbitmqctl list_user_permissions" in errors[0].getMessage()
    # aio-pika's WARNING per refused attempt is DEBUG, with a note saying why
    assert all("logged the refusal as an ERROR" in r.getMessage() for r in demoted_attempts(caplog))
