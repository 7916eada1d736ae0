"""RabbitMQ: ``health()`` says why the broker is out of reach (``outage_reason``).

Before, a password changed under a running service, permissions taken away and a
network outage looked the same in ``health()``: ``outage`` set, ``ready`` False. Now
``outage_reason`` is ``"credentials refused"``, ``"access refused"`` (the virtual host)
or ``"unreachable"``, with a message for a person (``outage_message``, the URL's
password hidden), and both are None again once the connection is back.

The credentials tests make a user of their own (``rabbitmqctl add_user``, see
``test_rabbitmq_credentials``) and delete it after; the transport reaches the broker
through the fault proxy, which cuts its connection.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator

import pytest

from pepperpy.event import EventBus
from pepperpy.event.transports.rabbitmq import RabbitMQTransport
from tests.bus.faultproxy import FaultProxy, finishes
from tests.bus.test_rabbitmq_credentials import rabbitmqctl
from tests.conftest import unique_name
from tests.helpers import eventually

pytestmark = pytest.mark.rabbitmq


@pytest.fixture
def user(amqp_url: str) -> Iterator[str]:
    """A user of the test's own, password ``s3cret-one``, with every permission on ``/``."""
    if shutil.which("rabbitmqctl") is None:
        pytest.skip("rabbitmqctl is not installed")
    name = unique_name("pep_user")
    rabbitmqctl("add_user", name, "s3cret-one")
    try:
        rabbitmqctl("set_permissions", "-p", "/", name, ".*", ".*", ".*")
        yield name
    finally:
        rabbitmqctl("delete_user", name)


#: how each test takes the user's access away, gives it back, and the reason it shows
CHANGES = {
    "password": (
        ("change_password", "{user}", "s3cret-two"),
        ("change_password", "{user}", "s3cret-one"),
        "credentials refused",
        "ACCESS_REFUSED",
    ),
    "permissions": (
        ("clear_permissions", "-p", "/", "{user}"),
        ("set_permissions", "-p", "/", "{user}", ".*", ".*", ".*"),
        "access refused",
        "refused to open virtual host '/'",
    ),
}


@pytest.mark.flaky(reruns=2)
@pytest.mark.parametrize("change", sorted(CHANGES))
async def test_refused_access_is_the_reason_until_it_works_again(
    user: str, proxy: FaultProxy, change: str
) -> None:
    take_command, give_command, reason, said = CHANGES[change]
    take, give = ([part.format(user=user) for part in c] for c in (take_command, give_command))
    transport = RabbitMQTransport(
        f"amqp://{user}:s3cret-one@127.0.0.1:{proxy.port}/",
        exchange=unique_name("pep.reasons"),
        partitions=1,
        reconnect_interval=0.2,
        connect_timeout=1.0,
    )
    bus = EventBus(transport=transport)
    bus.subscribe("jobs.*")(lambda event: None)
    try:
        async with bus:
            assert bus.health().outage_reason is None
            rabbitmqctl(*take)
            proxy.drop()  # the connection is lost; each attempt to reconnect is refused
            await eventually(lambda: bus.health().outage_reason == reason, timeout=20)
            health = bus.health()
            assert not health.ready and health.outage is not None
            message = health.outage_message
            assert message is not None
            assert message.startswith(
                f"RabbitMQ at amqp://{user}:***@127.0.0.1:{proxy.port}/ refuses the "
                "transport's connection: "
            )
            assert said in message and "s3cret" not in message
            rabbitmqctl(*give)
            await eventually(lambda: bus.health().ready, timeout=30)
            health = bus.health()
            assert health.outage_reason is None and health.outage_message is None
    finally:
        rabbitmqctl(*give)  # again, if the test failed before: delete_topology() logs in
        await finishes(transport.close(), 15)
        await finishes(transport.delete_topology(), 15)


@pytest.mark.flaky(reruns=2)
async def test_a_network_outage_is_unreachable_until_the_connection_is_back(
    proxy: FaultProxy, rabbitmq_through_proxy: Callable[..., RabbitMQTransport]
) -> None:
    transport = rabbitmq_through_proxy()
    bus = EventBus(transport=transport)
    bus.subscribe("jobs.*")(lambda event: None)
    async with bus:
        proxy.refuse()
        proxy.drop()
        await eventually(lambda: bus.health().outage is not None, timeout=15)
        health = bus.health()
        assert health.outage_reason == "unreachable"
        assert health.outage_message is not None
        assert health.outage_message.startswith(
            f"lost the connection to RabbitMQ at amqp://guest:***@127.0.0.1:{proxy.port}/ ("
        )
        assert not health.ready
        proxy.heal()
        await eventually(lambda: bus.health().ready, timeout=15)
        assert bus.health().outage_reason is None
