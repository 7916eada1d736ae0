"""RabbitMQ and NATS: an option the broker cannot take is refused when the transport is
made, naming the option and its range.

They were taken, and failed later, at connect or subscribe, with a driver's error
(pamqp's ``TypeError: Short unsigned integer range``) or the broker's
(``PRECONDITION_FAILED ... x-expires``, "consumer not found", "invalid JSON"), none
naming the option (audit 14, finding 3). Each bound is also shown to be what the real
broker takes: the largest value allowed works there. On an exchange, or a stream and
subject prefix, of the test's own, deleted afterwards.

RabbitMQ's ``reconnect_interval``, ``rebalance_interval`` and ``handover_grace`` took
any finite number of seconds, and ``1e12`` silently turned something off: a lost
connection was never retried in practice, a group never balanced (a member that joined
stayed idle), the keys of a member that lost its connection were never handled; ``1e-9``
retried a lost connection, or counted and pinged a group, back to back. They now take
0.05 to 300 s, 0.01 to 3,600 s and 0 to 86,400 s, as Redis's ``max_backoff`` takes 0.05
to 300 s.

NATS's ``reconnect_wait`` and ``ping_interval`` took any finite number of seconds too:
``reconnect_wait=1e12`` never retried a lost connection in practice, ``1e-9`` retried it
back to back; ``ping_interval=1e12`` never noticed a connection gone silent (nor a
deleted stream), ``1e-9`` pinged the server (and asked for the stream's info) back to
back. They now take 0.05 to 300 s and 0.1 to 600 s.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pytest

from pepperpy.event import ConfigurationError, Event, EventBus
from pepperpy.event.transports.nats import NatsTransport
from pepperpy.event.transports.rabbitmq import RabbitMQTransport
from tests.helpers import eventually

#: the longest JetStream duration in whole seconds: int64 nanoseconds
NATS_MOST = 9_223_372_036


@pytest.mark.parametrize(
    ("options", "query", "message"),
    [
        ({"prefetch": 65536}, "", "prefetch must be at most 65535"),
        ({}, "prefetch=70000", "prefetch must be at most 65535"),
        ({"ungrouped_expiry": 0.0001}, "", "ungrouped_expiry must be from 0.001 to 315,360,000"),
        ({"ungrouped_expiry": 1e10}, "", "ungrouped_expiry must be from 0.001 to 315,360,000"),
        ({}, "ungrouped_expiry=315360001", "ungrouped_expiry must be from 0.001"),
        *(
            (options, query, rf"{name} must be from {span} s \(")
            for name, span, too_long, too_short in [
                ("reconnect_interval", "0.05 to 300", 300.5, 0.04),
                ("rebalance_interval", "0.01 to 3,600", 3601, 0.009),
                ("handover_grace", "0 to 86,400", 86_401, None),
            ]
            for options, query in [
                ({name: 1e12}, ""),
                ({name: too_long}, ""),
                ({}, f"{name}=1e12"),
                ({}, f"{name}={too_long}"),
                *([({name: 1e-9}, ""), ({}, f"{name}={too_short}")] if too_short else []),
            ]
        ),
    ],
)
def test_rabbitmq_refuses_what_amqp_cannot_carry(
    options: dict[str, Any], query: str, message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        RabbitMQTransport(f"amqp://guest:guest@127.0.0.1/?{query}", **options)


@pytest.mark.parametrize(
    ("name", "least", "most"),
    [
        ("reconnect_interval", 0.05, 300),
        ("rebalance_interval", 0.01, 3600),
        ("handover_grace", 0, 86_400),
    ],
)
def test_rabbitmq_durations_take_their_whole_range(name: str, least: float, most: float) -> None:
    for value in (least, most):
        assert getattr(RabbitMQTransport("amqp://h/", **{name: value}), name) == value
        assert getattr(RabbitMQTransport(f"amqp://h/?{name}={value}"), name) == value


@pytest.mark.parametrize("name", ["ack_wait", "lane_ack_wait", "inactive_threshold", "max_age"])
@pytest.mark.parametrize("value", [NATS_MOST + 1, 1e10, 1e300])
def test_nats_refuses_durations_jetstream_cannot_hold(name: str, value: float) -> None:
    message = f"{name} must be at most 9,223,372,036 seconds"
    with pytest.raises(ConfigurationError, match=message):
        NatsTransport("nats://127.0.0.1:4222", **{name: value})
    with pytest.raises(ConfigurationError, match=message):
        NatsTransport(f"nats://127.0.0.1:4222?{name}={quote(str(value))}")


@pytest.mark.parametrize(
    ("name", "span", "too_short", "too_long"),
    [("reconnect_wait", "0.05 to 300", 0.04, 300.5), ("ping_interval", "0.1 to 600", 0.09, 601)],
)
@pytest.mark.parametrize("end", ["short", "long", "1e12", "1e-9"])
def test_nats_refuses_pauses_out_of_range(
    name: str, span: str, too_short: float, too_long: float, end: str
) -> None:
    value = {"short": too_short, "long": too_long, "1e12": 1e12, "1e-9": 1e-9}[end]
    message = rf"{name} must be from {span} s \(.+\), got {value!r}"
    with pytest.raises(ConfigurationError, match=message):
        NatsTransport("nats://127.0.0.1:4222", **{name: value})
    with pytest.raises(ConfigurationError, match=message):
        NatsTransport(f"nats://127.0.0.1:4222?{name}={value!r}")
    with pytest.raises(ConfigurationError, match=message):
        EventBus(transport=f"nats://127.0.0.1:4222?{name}={value!r}")


@pytest.mark.parametrize(
    ("name", "least", "most"), [("reconnect_wait", 0.05, 300), ("ping_interval", 0.1, 600)]
)
def test_nats_pauses_take_their_whole_range(name: str, least: float, most: float) -> None:
    for value in (least, most):
        assert getattr(NatsTransport("nats://h:1", **{name: value}).options, name) == value
        assert getattr(NatsTransport(f"nats://h:1?{name}={value}").options, name) == value


@pytest.mark.rabbitmq
async def test_rabbitmq_takes_the_largest_values_allowed(
    rabbitmq_transports: Callable[..., RabbitMQTransport],
) -> None:
    bus = EventBus(
        transport=rabbitmq_transports(
            prefetch=65535,
            ungrouped_expiry=315_360_000,
            reconnect_interval=300,
            rebalance_interval=3600,
            handover_grace=86_400,
        )
    )
    got: list[Event] = []
    bus.subscribe("range.*")(got.append)
    bus.subscribe("range.*", group="g")(got.append)
    async with asyncio.timeout(30), bus:
        await bus.publish("range.x", 1)
        await eventually(lambda: len(got) == 2)


@pytest.mark.nats
async def test_nats_takes_the_longest_durations_allowed(
    nats_url: str, names: dict[str, str]
) -> None:
    transport = NatsTransport(
        nats_url,
        **names,
        retention="limits",
        max_age=NATS_MOST,
        ack_wait=NATS_MOST,
        lane_ack_wait=NATS_MOST,
        inactive_threshold=NATS_MOST,
        reconnect_wait=300,
        ping_interval=600,
    )
    bus = EventBus(transport=transport)
    got: list[Event] = []
    bus.subscribe("range.*")(got.append)
    bus.subscribe("range.*", group="g")(got.append)
    async with asyncio.timeout(30), bus:
        await bus.publish("range.x", 1)
        await bus.publish("range.x", 2, key="k")
        await eventually(lambda: len(got) == 4)


@pytest.mark.parametrize("value", [101, 10**9])
def test_nats_refuses_max_outstanding_pings_out_of_range(value: int) -> None:
    """``max_outstanding_pings`` took any whole number from 1: ``10**9`` never gave a
    silent connection up (dead-connection detection off). It now takes 1 to 100."""
    message = rf"max_outstanding_pings must be from 1 to 100 \(.+\), got {value!r}"
    with pytest.raises(ConfigurationError, match=message):
        NatsTransport("nats://127.0.0.1:4222", max_outstanding_pings=value)
    with pytest.raises(ConfigurationError, match=message):
        NatsTransport(f"nats://127.0.0.1:4222?max_outstanding_pings={value}")


def test_nats_max_outstanding_pings_takes_its_whole_range() -> None:
    for value in (1, 100):
        by_keyword = NatsTransport("nats://h", max_outstanding_pings=value)
        assert by_keyword.options.max_outstanding_pings == value
        in_url = NatsTransport(f"nats://h?max_outstanding_pings={value}")
        assert in_url.options.max_outstanding_pings == value
