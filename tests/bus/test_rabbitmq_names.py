"""RabbitMQ names: any group name the bus accepts gets queues AMQP and aio-pika accept.

The live tests publish to an exchange of their own and delete the exchange, queues and
group exchanges they declared afterwards.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from pepperpy.event import ConfigurationError, Event, EventBus
from pepperpy.event.transports import Subscription
from pepperpy.event.transports.rabbitmq import RabbitMQTransport
from pepperpy.event.transports.rabbitmq._config import AMQP_NAME
from pepperpy.event.transports.rabbitmq._group import MAX_BASE, group_base
from tests.conftest import unique_name
from tests.helpers import eventually, settle

#: group names memory://, Redis and NATS accept, which pamqp refused in queue names
ODD_GROUPS = [
    "billing*eu",
    "gt>",
    "pipe|x",
    "ünï",
    "😀",
    "tab\tx",
    "nl\nx",
    "nul\x00x",
    "g" * 100,  # the group's exchanges would pass pamqp's 127 characters
    "g" * 200,
    "g" * 260,
]
#: those the bus accepts: it refuses a NUL in a group name (tests/core/test_bus_unit.py)
BUS_GROUPS = [group for group in ODD_GROUPS if "\x00" not in group]
#: group names that always made valid names: their queues keep their names
PLAIN_GROUPS = ["billing", "with space", "dot.ted", "hash#", "slash/x", "colon:x", "a+b"]
NAME = "0123456789abcdef"  # a subscription name as the bus makes them (a digest)


@pytest.mark.parametrize("group", PLAIN_GROUPS)
def test_groups_that_made_valid_names_keep_them(group: str) -> None:
    assert group_base("pepperpy.events", group, NAME) == f"pepperpy.events.group.{group}.{NAME}"


@pytest.mark.parametrize("group", [*ODD_GROUPS, "\ud800", "x" * 82])
def test_any_group_gets_a_valid_base_with_room_for_every_suffix(group: str) -> None:
    base = group_base("pepperpy.events", group, NAME)
    for queue in (f"{base}.p63", f"{base}.presence", f"{base}.p63.released"):
        assert AMQP_NAME.fullmatch(queue) and len(queue) <= 255, queue
    for exchange in (f"{base}.lanes", f"{base}.nolane"):
        assert AMQP_NAME.fullmatch(exchange) and len(exchange) <= 127, exchange
    assert len(base) <= MAX_BASE
    assert base.startswith("pepperpy.events.group.")
    assert group_base("pepperpy.events", group, NAME) == base  # the same in every process


def test_shortened_bases_stay_readable_and_distinct() -> None:
    assert group_base("x", "ünï", NAME).startswith("x.group.uni+")
    assert group_base("x", "billing*eu", NAME).startswith("x.group.billing_eu+")
    bases = {
        group_base(exchange, group, name)
        for exchange in ("x", "y")
        for group in ("a*b", "a|b", "a>b", "g" * 300, "g" * 301)
        for name in (NAME, NAME[::-1])
    }
    assert len(bases) == 2 * 5 * 2


@pytest.mark.parametrize("exchange", ["bad*name", "tab\there", "ünï", "x" * 128])
def test_an_exchange_name_amqp_clients_cannot_send_is_refused_up_front(exchange: str) -> None:
    with pytest.raises(ConfigurationError, match="exchange"):
        RabbitMQTransport("amqp://guest:guest@127.0.0.1:5672/", exchange=exchange)


# -- against the broker ---------------------------------------------------------------


@pytest.fixture
async def make_transport(amqp_url: str) -> AsyncIterator[Callable[..., RabbitMQTransport]]:
    exchange = unique_name("pep.names")
    made: list[RabbitMQTransport] = []

    def make(**options: Any) -> RabbitMQTransport:
        options.setdefault("partitions", 2)
        transport = RabbitMQTransport(amqp_url, exchange=exchange, **options)
        made.append(transport)
        return transport

    yield make
    for transport in made:
        await transport.close()
        await transport.delete_topology()


@pytest.mark.rabbitmq
async def test_every_group_name_the_bus_accepts_receives_each_event_once(
    make_transport: Callable[..., RabbitMQTransport],
) -> None:
    bus = EventBus(transport=make_transport())
    got: Counter[str] = Counter()
    for index, group in enumerate(BUS_GROUPS[:6]):
        bus.subscribe(f"names.t{index}", group=group)(lambda e: got.update([e.type]))
    async with bus:
        # and added to the running bus
        for index, group in enumerate(BUS_GROUPS[6:], start=6):
            bus.subscribe(f"names.t{index}", group=group)(lambda e: got.update([e.type]))
        await bus.start()  # waits until they are registered (raises what failed)
        for index in range(len(BUS_GROUPS)):
            await bus.publish(f"names.t{index}", index)
        await eventually(lambda: len(got) == len(BUS_GROUPS), timeout=20)
        await settle(0.3)
    assert got == Counter(f"names.t{index}" for index in range(len(BUS_GROUPS)))


@pytest.mark.rabbitmq
async def test_a_group_name_with_a_lone_surrogate_works_on_the_transport(
    make_transport: Callable[..., RabbitMQTransport],
) -> None:
    transport = make_transport(partitions=1)
    await transport.start()
    got: list[Event] = []

    async def deliver(event: Event) -> None:
        got.append(event)

    await transport.subscribe(Subscription("names.s", deliver, group="\ud800", name=NAME))
    await transport.publish(Event("names.s", 1))
    await eventually(lambda: len(got) == 1)
