"""NATS under connection loss: a silent link is given up, key lanes resume, and the log
says what happened once, with a reason.

The subscriber's connection goes through the fault proxy (``proxy`` and
``through_proxy`` of ``tests/bus/conftest.py``); a publisher, where there is one, connects
straight to the server.
Every value that bounds a wait is set short, so no test waits for a default.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pytest

from pepperpy.event import ConfigurationError, Event, EventBus
from pepperpy.event.transports.nats import NatsTransport
from pepperpy.event.transports.nats import _outage as nats_outage
from tests.bus.faultproxy import FaultProxy
from tests.faultproxy import Action, Link
from tests.helpers import eventually

LOGGER = "pepperpy.event.transports.nats"


def nats_records(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    """The transport's log messages at ``level`` or above."""
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno >= level]


def failing(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The transport's warnings that reconnecting fails."""
    return [m for m in nats_records(caplog, logging.WARNING) if m.startswith("cannot reconnect")]


# -- options ----------------------------------------------------------------------------


def test_ping_and_lane_options_come_from_the_url_and_keywords() -> None:
    options = NatsTransport(
        "nats://h:1?ping_interval=2.5&max_outstanding_pings=3&lane_ack_wait=4"
    ).options
    assert (options.ping_interval, options.max_outstanding_pings) == (2.5, 3)
    assert (options.lane_ack_wait, options.lane_wait) == (4.0, 4.0)
    options = NatsTransport("nats://h:1?ping_interval=9", ping_interval=1).options
    assert options.ping_interval == 1  # keywords win
    defaults = NatsTransport("nats://h:1").options
    assert (defaults.ping_interval, defaults.max_outstanding_pings) == (5.0, 2)
    assert (defaults.ack_wait, defaults.lane_ack_wait, defaults.lane_wait) == (30.0, None, 10.0)
    # a shorter ack_wait stays the lanes' too; lane_ack_wait, given, is theirs
    assert NatsTransport("nats://h:1", ack_wait=4.0).options.lane_wait == 4.0
    assert NatsTransport("nats://h:1", ack_wait=4.0, lane_ack_wait=6.0).options.lane_wait == 6.0
    assert NatsTransport("nats://h:1?lane_ack_wait=none").options.lane_ack_wait is None


@pytest.mark.parametrize(
    ("url", "kwargs", "message"),
    [
        ("nats://h:1?ping_interval=0", {}, "ping_interval must be a finite number of seconds"),
        (
            "nats://h:1?ping_interval=nan",
            {},
            "ping_interval must be a number of seconds in decimal digits",
        ),
        ("nats://h:1?lane_ack_wait=-1", {}, "lane_ack_wait must be a finite number"),
        (
            "nats://h:1?lane_ack_wait=inf",
            {},
            "lane_ack_wait must be a number of seconds in decimal digits",
        ),
        ("nats://h:1?max_outstanding_pings=0", {}, "max_outstanding_pings must be an int >= 1"),
        (
            "nats://h:1?max_outstanding_pings=two",
            {},
            "max_outstanding_pings must be a whole number in digits 0-9",
        ),
        # the seconds options there were take the same rule: infinity is no duration
        ("nats://h:1?ack_wait=inf", {}, "ack_wait must be a number of seconds in decimal digits"),
        (
            "nats://h:1?reconnect_wait=nan",
            {},
            "reconnect_wait must be a number of seconds in decimal digits",
        ),
    ],
)
def test_bad_ping_and_lane_options_are_refused(
    url: str, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        NatsTransport(url, **kwargs)


def test_a_ping_count_of_a_wrong_type_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="max_outstanding_pings must be an int >= 1, got 1.5"):
        NatsTransport("nats://h:1", max_outstanding_pings=1.5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ping_interval": True}, "ping_interval must be a finite number"),
        ({"ping_interval": "5"}, "ping_interval must be a finite number"),
        ({"connect_timeout": True}, "connect_timeout must be a finite number"),
    ],
)
def test_seconds_of_a_wrong_type_are_a_type_error(kwargs: dict[str, object], message: str) -> None:
    # docs/errors.md: a wrong argument type stays a TypeError (a URL's text is a bad value)
    with pytest.raises(TypeError, match=message):
        NatsTransport("nats://h:1", **kwargs)


# -- a silent connection ----------------------------------------------------------------


def hold_first(links: list[Link]) -> Callable[[Link, bytes], Action]:
    """An ``on_server`` hook: the first chunk the server sends goes through, then that
    connection's server->client direction goes silent (client writes still pass)."""

    def hook(link: Link, data: bytes) -> Action:
        if not links:
            links.append(link)
            return "hold"
        return None

    return hook


@pytest.mark.nats
async def test_a_silent_connection_is_given_up_after_unanswered_pings(
    proxy: FaultProxy,
    through_proxy: Callable[..., NatsTransport],
    names: dict[str, str],
    nats_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    received: list[Any] = []
    subscriber = EventBus(transport=through_proxy(ping_interval=0.2, max_outstanding_pings=2))
    subscriber.subscribe("jobs.*", group="workers")(lambda event: received.append(event.data))
    publisher = EventBus(transport=NatsTransport(nats_url, **names))
    async with subscriber, publisher:
        held: list[Link] = []
        proxy.on_server = hold_first(held)  # the next PONG, say, is the last word
        await eventually(lambda: bool(held))
        # nats-py's defaults (ping every 120 s, 2 unanswered) took 240-360 s here
        await eventually(lambda: held[0].closed, timeout=10)
        proxy.on_server = None
        await publisher.publish("jobs.run", "after", key="k")
        await eventually(lambda: received == ["after"], timeout=10)
    [warning] = [m for m in nats_records(caplog, logging.WARNING) if "disconnected" in m]
    assert "2 pings in a row went unanswered (ping_interval=0.2s)" in warning


# -- key lanes --------------------------------------------------------------------------


@pytest.mark.nats
async def test_a_key_lane_whose_delivery_was_lost_resumes_after_lane_ack_wait(
    proxy: FaultProxy,
    through_proxy: Callable[..., NatsTransport],
) -> None:
    handled: list[Any] = []
    bus = EventBus(transport=through_proxy(lane_ack_wait=1.0))  # ack_wait stays 30 s
    bus.subscribe("jobs.*", group="workers")(lambda event: handled.append(event.data))
    lost: list[Link] = []

    def lose_a_lane_delivery(link: Link, data: bytes) -> Action:
        if not lost and b"_k" in data and b" $JS.ACK." in data:  # a key lane's delivery
            lost.append(link)
            return "drop"  # reset instead of forwarding: the delivery dies with the link
        return None

    async with bus:
        proxy.on_server = lose_a_lane_delivery
        await bus.publish("jobs.run", 1, key="k")
        await eventually(lambda: bool(lost))
        proxy.on_server = None
        await bus.publish("jobs.run", 2, key="k")  # waits behind 1 on its lane
        # the client is back within reconnect_wait; the lane waited for ack_wait (30 s)
        await eventually(lambda: handled == [1, 2], timeout=15)


@pytest.mark.nats
async def test_a_keyed_handler_slower_than_lane_ack_wait_is_not_redelivered(
    nats_url: str,
    names: dict[str, str],
) -> None:
    transport = NatsTransport(nats_url, **names, lane_ack_wait=1.0)
    bus = EventBus(transport=transport)
    handled: list[Any] = []

    async def slow(event: Event) -> None:
        handled.append(event.data)
        await asyncio.sleep(2.5)  # the work: over twice lane_ack_wait

    bus.subscribe("jobs.*", group="slow")(slow)
    async with bus:
        await bus.publish("jobs.run", 1, key="k")
        await bus.publish("jobs.run", 2, key="k")
        # a redelivery of 1 (unreported for lane_ack_wait) would queue behind it: 1, 1, 2
        await eventually(lambda: len(handled) >= 2, timeout=15)
    assert handled == [1, 2]


@pytest.mark.nats
@pytest.mark.parametrize(
    ("options", "unkeyed", "lanes"),
    [({}, 30.0, 10.0), ({"ack_wait": 4.0}, 4.0, 4.0), ({"lane_ack_wait": 2.0}, 30.0, 2.0)],
)
async def test_key_lanes_get_their_own_ack_wait(
    nats_url: str,
    names: dict[str, str],
    options: dict[str, float],
    unkeyed: float,
    lanes: float,
) -> None:
    transport = NatsTransport(nats_url, **names, partitions=2, **options)
    bus = EventBus(transport=transport)
    bus.subscribe("jobs.*", group="workers")(lambda event: None)
    async with bus:
        [consumer] = transport._consumers.values()
        assert transport._js is not None
        waits = [
            (await transport._js.consumer_info(names["stream"], lane.name)).config.ack_wait
            for lane in consumer.lanes
        ]
    assert waits == [unkeyed, lanes, lanes]


# -- what the log says ------------------------------------------------------------------


@pytest.mark.nats
async def test_an_outage_is_one_warning_with_its_reason_not_one_per_attempt(
    proxy: FaultProxy,
    through_proxy: Callable[..., NatsTransport],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    bus = EventBus(transport=through_proxy(connect_timeout=1.0))
    bus.subscribe("jobs.*")(lambda event: None)
    async with bus:
        proxy.refuse()
        accepted = proxy.accepted
        proxy.drop()
        await eventually(lambda: proxy.accepted >= accepted + 4, timeout=10)  # 4 refused
        proxy.heal()
        await eventually(lambda: "reconnected to NATS" in caplog.text, timeout=10)
    warnings = nats_records(caplog, logging.WARNING)
    assert len([m for m in warnings if m.startswith("disconnected from NATS")]) == 1
    [warned] = failing(caplog)
    assert "attempt(s) failed" in warned
    debug = [m for m in nats_records(caplog, logging.DEBUG) if m not in warnings]
    assert len([m for m in debug if m.startswith("cannot reconnect")]) >= 2  # the others
    assert all(not m.rstrip().endswith(":") and "()" not in m for m in warnings)


@pytest.mark.nats
async def test_a_server_that_never_answers_is_named_in_the_warning(
    proxy: FaultProxy,
    through_proxy: Callable[..., NatsTransport],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    bus = EventBus(transport=through_proxy(connect_timeout=1.0))  # 1 s per attempt
    bus.subscribe("jobs.*")(lambda event: None)
    async with bus:
        proxy.blackhole()  # new connections are accepted and never answered
        proxy.drop()

        await eventually(lambda: bool(failing(caplog)), timeout=10)
        proxy.heal()
        await eventually(lambda: "reconnected to NATS" in caplog.text, timeout=10)
    # was "NATS connection error: " (a bare TimeoutError) once per attempt
    assert "(the server did not answer in time)" in failing(caplog)[0]
    assert all(not m.rstrip().endswith(":") for m in nats_records(caplog, logging.WARNING))


@pytest.mark.nats
async def test_an_outage_that_lasts_is_warned_about_again(
    proxy: FaultProxy,
    through_proxy: Callable[..., NatsTransport],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(nats_outage, "STILL_DOWN_EVERY", 0.0)  # a minute, really
    caplog.set_level(logging.INFO, logger=LOGGER)
    bus = EventBus(transport=through_proxy(connect_timeout=1.0))
    bus.subscribe("jobs.*")(lambda event: None)
    async with bus:
        proxy.refuse()
        proxy.drop()

        await eventually(lambda: len(failing(caplog)) >= 3, timeout=10)
        proxy.heal()
        await eventually(lambda: "reconnected to NATS" in caplog.text, timeout=10)
    assert "; 1 attempt(s) failed" in failing(caplog)[0]
    assert "; 3 attempt(s) failed" in failing(caplog)[2]
