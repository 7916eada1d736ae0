"""Redis: ``health()`` says why the broker is out of reach (``outage_reason``).

Before, a password changed under a running service and a network outage looked the
same in ``health()``: ``outage`` set, ``ready`` False. Now ``outage_reason`` is
``"credentials refused"`` for the one and ``"unreachable"`` for the other, with a
message for a person (``outage_message``, no password), and both are None again once
Redis is back. Also: the ERROR about refused credentials is logged when the outage began
as a cut connection (the usual way: the reconnections after the cut are the ones
refused); before, only an outage whose very first failure was a refusal logged it.

Each test makes a Redis ACL user of its own (``ACL SETUSER``) and deletes it after; the
transport reaches Redis through the fault proxy, which cuts its connections.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from pepperpy.event import EventBus
from pepperpy.event.transports.redis import RedisTransport
from pepperpy.event.transports.redis._outage import Outages
from tests.bus.credentials import network_outage
from tests.bus.faultproxy import FaultProxy, finishes
from tests.conftest import unique_name
from tests.helpers import eventually

pytestmark = pytest.mark.redis

LOGGER = "pepperpy.event.transports.redis"


@pytest.fixture
async def user(client: Any) -> AsyncIterator[str]:
    """A Redis user of the test's own, password ``s3cret-one``, allowed every key and command."""
    name = unique_name("pep_user")
    await client.execute_command("ACL", "SETUSER", name, "on", ">s3cret-one", "~*", "&*", "+@all")
    try:
        yield name
    finally:
        await client.execute_command("ACL", "DELUSER", name)


async def set_password(client: Any, user: str, password: str) -> None:
    await client.execute_command("ACL", "SETUSER", user, "resetpass", f">{password}")


@pytest.mark.flaky(reruns=2)
async def test_refused_credentials_are_the_reason_until_they_work_again(
    user: str,
    client: Any,
    proxy: FaultProxy,
    namespace: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    transport = RedisTransport(
        f"redis://{user}:s3cret-one@127.0.0.1:{proxy.port}/0",
        namespace=namespace,
        partitions=1,
        max_backoff=0.2,
        trim_interval=None,
    )
    got: list[int] = []
    bus = EventBus(transport=transport)
    bus.subscribe("jobs.*", group="workers")(lambda event: got.append(event.data))
    try:
        async with bus:
            await bus.publish("jobs.run", 0)
            await eventually(lambda: got == [0], timeout=10)
            assert bus.health().outage_reason is None
            await set_password(client, user, "s3cret-two")
            proxy.drop()  # the connections are cut; each reconnection is refused
            await eventually(
                lambda: bus.health().outage_reason == "credentials refused", timeout=15
            )
            health = bus.health()
            assert not health.ready and health.outage is not None
            assert health.outage_message is not None
            assert health.outage_message.startswith(
                f"Redis at 127.0.0.1:{proxy.port} refuses the transport's credentials ("
            )
            assert "s3cret" not in health.outage_message
            await set_password(client, user, "s3cret-one")
            await eventually(lambda: bus.health().ready, timeout=15)
            health = bus.health()
            assert health.outage_reason is None and health.outage_message is None
            await bus.publish("jobs.run", 1)
            await eventually(lambda: got == [0, 1], timeout=10)
    finally:
        await set_password(client, user, "s3cret-one")
        await finishes(transport.close(), 15)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    assert "refuses the transport's credentials" in errors[0].getMessage()


@pytest.mark.flaky(reruns=2)
async def test_a_network_outage_is_unreachable_until_redis_is_back(
    proxy: FaultProxy, namespace: str
) -> None:
    transport = RedisTransport(
        f"redis://127.0.0.1:{proxy.port}/0",
        namespace=namespace,
        partitions=1,
        max_backoff=0.2,
        trim_interval=None,
    )
    bus = EventBus(transport=transport)
    bus.subscribe("jobs.*", group="workers")(lambda event: None)
    shown = f"Redis at 127.0.0.1:{proxy.port} is unreachable ("
    try:
        async with bus:
            await network_outage(
                bus,
                proxy,
                lambda message: message.startswith(shown),
                until=lambda bus: bus.health().outage_reason == "unreachable",
            )
    finally:
        proxy.heal()
        await finishes(transport.close(), 15)


async def test_memory_and_a_transport_that_does_not_say_have_no_reason() -> None:
    async with EventBus() as bus:
        health = bus.health()
        assert health.outage_reason is None and health.outage_message is None
        assert bus.transport.outage_reason() is None


def test_a_refusal_after_a_cut_is_the_error_and_the_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # the usual order: the cut first (a ConnectionError opens the outage, a WARNING),
    # then every reconnection refused; the refusal was logged at DEBUG only
    from redis.exceptions import AuthenticationError, ConnectionError

    caplog.set_level(logging.DEBUG, logger=LOGGER)
    outages = Outages("example.com:6379", 2.0, (AuthenticationError,))
    who = "group 'workers:jobs.*' (partition 0)"
    outages.lost("worker 0", who, ConnectionError("Connection closed by server."))
    assert outages.reason() == (
        "unreachable",
        "Redis at example.com:6379 is unreachable (Connection closed by server.)",
    )
    refused = AuthenticationError("invalid username-password pair or user is disabled.")
    outages.lost("worker 0", who, refused)
    outages.lost("worker 0", who, refused)
    assert outages.reason() == (
        "credentials refused",
        "Redis at example.com:6379 refuses the transport's credentials (invalid "
        "username-password pair or user is disabled.)",
    )
    expected = [
        (logging.WARNING, "Redis at example.com:6379 is unreachable (Connection closed"),
        (logging.ERROR, "Redis at example.com:6379 refuses the transport's credentials"),
        (logging.DEBUG, "group 'workers:jobs.*' (partition 0): Redis unreachable"),
    ]
    assert [r.levelno for r in caplog.records] == [level for level, _ in expected]
    for record, (_, start) in zip(caplog.records, expected, strict=True):
        assert record.getMessage().startswith(start)
    outages.reached("worker 0")
    assert outages.reason() is None and not outages.down
    caplog.clear()
    outages.lost("worker 0", who, refused)  # a new outage: its refusal is an ERROR again
    assert [r.levelno for r in caplog.records] == [logging.ERROR]
