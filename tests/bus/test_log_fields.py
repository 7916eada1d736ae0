"""The bus's log records carry their facts as attributes, and tracebacks are not repeated.

A JSON log pipeline reads ``record.kind``, ``record.event_id`` and the rest without
parsing messages (docs/bus.md, "Log records and their fields"). A handler that fails
every event (its database is down) logs the traceback of its first dead letter, then one
line per dead letter, until a minute has passed, and its retries at WARNING once a
minute (the rest at DEBUG): 1,000 failing events a second wrote about 1.5 MB of log a
second before.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from pepperpy.event import Event, EventBus, RetryPolicy
from pepperpy.event._bus_logging import Repeats, Seen, logged_shorter
from pepperpy.event.transports import Subscription
from pepperpy.event.transports.redis import RedisTransport
from tests.conftest import unique_name
from tests.helpers import delete_redis_keys, eventually

BUS = "pepperpy.event.bus"


def records(caplog: pytest.LogCaptureFixture, kind: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "kind", None) == kind]


async def test_retries_and_dead_letters_carry_their_fields(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger=BUS)
    bus = EventBus(retry_policy=RetryPolicy.fixed(3, base_delay=0))

    @bus.subscribe("orders.*", group="billing")
    async def bill(event: Event) -> None:
        raise ValueError("card declined")

    async with bus:
        event = await bus.publish("orders.placed", {"amount": 5})
        await eventually(lambda: bus.health().dead_letters == 1)
    retries = records(caplog, "retry")
    assert [vars(r)["attempt"] for r in retries] == [1, 2]
    # the first retry of a handler and error type a minute is a WARNING, the rest DEBUG
    assert [r.levelno for r in retries] == [logging.WARNING, logging.DEBUG]
    for record in retries:
        fields: dict[str, Any] = vars(record)
        assert fields["event_id"] == event.id and fields["event_type"] == "orders.placed"
        assert fields["handler"].endswith("bill") and fields["group"] == "billing"
        assert fields["max_attempts"] == 3 and fields["error_type"] == "ValueError"
        assert fields["transport"] == "memory://"
    [dead] = records(caplog, "dead_letter")
    fields = vars(dead)
    assert dead.levelno == logging.ERROR and dead.exc_info is not None
    assert fields["event_id"] == event.id and fields["attempt"] == 3
    assert fields["dead_letter_topic"] == "deadletter.orders.placed"
    assert fields["dead_letter_id"] in dead.getMessage()
    assert fields["traceback_logged"] is True


async def test_a_handler_failing_every_event_logs_one_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=BUS)
    bus = EventBus(retry_policy=RetryPolicy.fixed(1, base_delay=0))

    @bus.subscribe("orders.*")
    async def bill(event: Event) -> None:
        raise ConnectionError("the database is down")

    @bus.subscribe("orders.*")
    async def ship(event: Event) -> None:
        raise KeyError(event.data)

    async with bus:
        for n in range(5):
            await bus.publish("orders.placed", n)
        await eventually(lambda: bus.health().dead_letters == 10)
    dead = records(caplog, "dead_letter")
    assert len(dead) == 10  # every dead letter still has its record
    traced = [r for r in dead if r.exc_info is not None]
    assert sorted(vars(r)["error_type"] for r in traced) == ["ConnectionError", "KeyError"]
    plain = [r for r in dead if r.exc_info is None]
    assert sorted(vars(r)["repeats"] for r in plain) == [1, 1, 2, 2, 3, 3, 4, 4]
    [last] = [r for r in plain if vars(r)["repeats"] == 4 and vars(r)["handler"].endswith("bill")]
    message = last.getMessage()
    assert "after 1 attempt(s) (ConnectionError: the database is down)" in message
    assert "traceback not repeated: 4 such failure(s) of this handler" in message


def test_a_failure_is_logged_in_full_again_once_the_interval_passed() -> None:
    now = [0.0]
    repeats = Repeats(interval=60.0, clock=lambda: now[0])
    assert repeats.check("bill", ValueError()) == Seen(True, 0, 0.0)
    now[0] = 30.0
    assert repeats.check("bill", ValueError()) == Seen(False, 1, 30.0)
    assert repeats.check("bill", ValueError()) == Seen(False, 2, 30.0)
    assert repeats.check("bill", KeyError()).full  # another type: logged in full
    assert repeats.check("ship", ValueError()).full  # another handler: the same
    now[0] = 61.0
    again = repeats.check("bill", ValueError())
    assert again == Seen(True, 2, 61.0)  # and says how many were logged shorter
    assert logged_shorter(again, "at DEBUG") == " (2 like it logged at DEBUG in the 61 s before)"
    assert logged_shorter(Seen(True, 0, 0.0), "at DEBUG") == ""


async def test_serve_lines_name_their_transport(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=BUS)
    bus = EventBus()
    serving = asyncio.create_task(bus.serve(signals=()))
    await eventually(lambda: bool(records(caplog, "serving")))
    await bus.close()
    await serving
    for kind in ("serving", "serve_closing", "serve_closed"):
        [record] = records(caplog, kind)
        assert vars(record)["transport"] == "memory://"


@pytest.mark.redis
async def test_a_failed_ungrouped_redis_delivery_carries_its_fields(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    namespace = unique_name("peplogf")
    transport = RedisTransport(redis_url, namespace=namespace, partitions=1)

    async def fail(event: Event) -> None:
        raise RuntimeError("broken")

    try:
        await transport.start()
        await transport.subscribe(Subscription("jobs.*", fail, name="s"))
        sent = Event("jobs.run", 1)
        await transport.publish(sent)
        await eventually(lambda: bool(records(caplog, "delivery_failed")))
    finally:
        await transport.close()
        await delete_redis_keys(redis_url, f"{namespace}:*")
    [record] = records(caplog, "delivery_failed")
    assert (vars(record)["event_id"], vars(record)["event_type"]) == (sent.id, "jobs.run")
