"""RabbitMQ: ``health()`` says why the broker is out of reach (``outage_reason``).

Before, a password changed under a running service, permissions taken away and a
network outage looked the same in ``health()``: ``outage`` set, ``ready`` False. Now
``outage_reason`` is ``"credentials refused"``, ``"access refused"`` (the virtual host)
or ``"unreachable"``, with a message for a person (``outage_message``, the URL's
password hidden), and both are None again once the connection is back.

The credentials tests make a user of their own (``rabbitmqctl add_user``, see
``tests/bus/credentials.py``) and delete it after; the transport reaches the broker
through the fault proxy, which cuts its connection.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from pepperpy.event import EventBus
from pepperpy.event.transports.rabbitmq import RabbitMQTransport
from tests.bus.credentials import (
    RABBITMQ_CHANGES,
    network_outage,
    rabbitmq_change,
    rabbitmq_refusal,
    rabbitmq_through,
    rabbitmq_user,
    rabbitmqctl,
)
from tests.bus.faultproxy import FaultProxy, finishes
from tests.helpers import eventually

pytestmark = pytest.mark.rabbitmq

PASSWORD = "s3cret-one"


@pytest.fixture
def user(amqp_url: str) -> Iterator[str]:
    """A user of the test's own, password :data:`PASSWORD`, with every permission on ``/``."""
    with rabbitmq_user(PASSWORD) as name:
        yield name


#: the reason each way of taking the user's access away (see RABBITMQ_CHANGES) shows,
#: and what its message says
REASONS = {
    "password": ("credentials refused", "ACCESS_REFUSED"),
    "permissions": ("access refused", "refused to open virtual host '/'"),
}


@pytest.mark.flaky(reruns=2)
@pytest.mark.parametrize("change", sorted(RABBITMQ_CHANGES))
async def test_refused_access_is_the_reason_until_it_works_again(
    user: str, proxy: FaultProxy, change: str
) -> None:
    reason, said = REASONS[change]
    take, give = rabbitmq_change(change, user, PASSWORD, "s3cret-two")
    transport = rabbitmq_through(proxy, user, PASSWORD, "pep.reasons")
    bus = EventBus(transport=transport)
    bus.subscribe("jobs.*")(lambda event: None)
    try:
        async with bus:
            assert bus.health().outage_reason is None
            rabbitmqctl(*take)
            proxy.drop()  # the connection is lost; each attempt to reconnect is refused
            await eventually(lambda: bus.health().outage_reason == reason, timeout=20)
            message = rabbitmq_refusal(bus, f"amqp://{user}:***@127.0.0.1:{proxy.port}/")
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
    lost = f"lost the connection to RabbitMQ at amqp://guest:***@127.0.0.1:{proxy.port}/ ("
    async with bus:
        await network_outage(bus, proxy, lambda message: message.startswith(lost))
