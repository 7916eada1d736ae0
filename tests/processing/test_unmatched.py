"""Events an attached processor takes but none of its handlers match.

A typo between ``handle("orders.*")`` and ``attach(bus, "order.*", group="billing")``
used to make the group take and acknowledge every ``order.*`` event with no handler, no
log line and no count: on a broker the event was lost for that group. ``attach`` now
refuses a pattern no handler can match, and what still reaches no handler is counted and
warned about, refused (``unmatched="error"``) or let through (``unmatched="ignore"``).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from pepperpy.event import (
    ConfigurationError,
    Event,
    EventBus,
    EventManager,
    EventProcessor,
    EventStore,
    RetryPolicy,
    UnknownTopicError,
)
from tests.conftest import unique_name
from tests.helpers import delete_redis_keys, eventually, settle

LOGGER = "pepperpy.event.processor"


def warnings_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == LOGGER and record.levelno == logging.WARNING
    ]


def order_processor(seen: list[Event]) -> EventProcessor:
    processor = EventProcessor()
    processor.handle("order.placed", seen.append)
    return processor


# -- at attach(): a pattern no handler can match ------------------------------------


async def test_attaching_a_bus_pattern_no_handler_can_match_is_refused() -> None:
    processor = EventProcessor()
    processor.handle("orders.*", lambda e: None)
    processor.handle("orders.refunds.#", lambda e: None)
    bus = EventBus(["order.*"])
    with pytest.raises(ConfigurationError) as refused:
        processor.attach(bus, "order.*", group="billing")
    message = str(refused.value)
    assert "'order.*'" in message and "'billing'" in message
    assert "['orders.*', 'orders.refunds.#']" in message
    assert bus._subscriptions == []  # refused before subscribing: nothing is consumed
    async with bus:
        await bus.publish("order.placed", {"id": 1})


async def test_attaching_a_manager_pattern_no_handler_can_match_is_refused() -> None:
    processor = EventProcessor()
    processor.handle("user.*", lambda e: None)
    manager = EventManager()
    with pytest.raises(ConfigurationError, match=r"'users\.\*'.*\['user\.\*'\]"):
        processor.attach(manager, "users.*")
    assert manager.handlers("users.created") == []


async def test_attaching_a_store_filter_no_handler_can_match_is_refused() -> None:
    processor = EventProcessor()
    processor.handle("user.#", lambda e: None)
    store = EventStore()
    try:
        with pytest.raises(ConfigurationError, match=r"'users\.\*'.*\['user\.#'\]"):
            processor.attach(store, "users.*")
        with pytest.raises(ConfigurationError, match=r"'users\.\*'"):
            processor.attach(store, types="users.*")
        # one filter among several that no handler can match is a typo just the same
        with pytest.raises(ConfigurationError, match=r"\('orders\.\*'\)"):
            processor.attach(store, types=["user.*", "orders.*"])
    finally:
        await store.close()


async def test_patterns_that_can_reach_a_handler_are_accepted() -> None:
    processor = EventProcessor()
    processor.handle("order.placed", lambda e: None)
    bus = EventBus()
    store = EventStore()
    try:
        attachments = [
            processor.attach(bus, "order.*"),  # broader than the handler
            processor.attach(bus, "*.placed"),
            processor.attach(bus),  # everything
            processor.attach(EventManager(), "order.#"),
            processor.attach(store, types=["order.*", "#"]),
            EventProcessor().attach(bus, "anything.at.all"),  # no handlers yet: allowed
        ]
        for attachment in attachments:
            await attachment.stop()
    finally:
        await store.close()


async def test_a_bad_unmatched_option_is_refused_before_subscribing() -> None:
    processor = EventProcessor()
    bus = EventBus()
    with pytest.raises(ConfigurationError, match="unmatched must be one of 'warn', 'error'"):
        processor.attach(bus, "a.*", unmatched="drop")  # type: ignore[arg-type]
    assert bus._subscriptions == []

    async def nothing() -> AsyncIterator[Event]:
        return
        yield

    with pytest.raises(ConfigurationError, match="got 'loud'"):
        processor.run_in_background(nothing(), unmatched="loud")  # type: ignore[arg-type]


# -- at run time: events that reach no handler --------------------------------------


async def test_unmatched_bus_events_are_counted_and_warned_about_once_per_type(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    seen: list[Event] = []
    processor = order_processor(seen)
    bus = EventBus(retry_policy=RetryPolicy.NONE)
    attachment = processor.attach(bus, "order.*", group="billing")
    async with bus:
        for kind in ("order.cancelled", "order.cancelled", "order.refunded", "order.placed"):
            await bus.publish(kind, {})
        await bus.publish("order.cancelled", {})
        assert [event.type for event in seen] == ["order.placed"]
        assert attachment.processed == 1
        assert attachment.unmatched == 4
        logged = warnings_logged(caplog)
        assert len(logged) == 2  # once per event type within the quiet period
        assert "'order.cancelled'" in logged[0] and "'order.refunded'" in logged[1]
        assert "bus subscription 'order.*' (group 'billing')" in logged[0]
        assert "['order.placed']" in logged[0]
        assert "group 'billing' will not get it again" in logged[0]
        monkeypatch.setattr("pepperpy.event._unmatched.WARN_EVERY", 0.0)
        await bus.publish("order.cancelled", {})
        logged = warnings_logged(caplog)
        assert len(logged) == 3
        assert "2 more of type 'order.cancelled' since the last warning" in logged[2]
        await attachment.stop()


async def test_a_processor_attached_before_its_handlers_counts_what_it_took_meanwhile(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    manager = EventManager()
    processor = EventProcessor()
    attachment = processor.attach(manager, "user.*")
    await manager.emit("user.created", {"id": 1})
    assert (attachment.processed, attachment.unmatched) == (0, 1)
    assert "has no handlers" in warnings_logged(caplog)[0]
    seen: list[Event] = []
    processor.handle("user.*", seen.append)
    await manager.emit("user.created", {"id": 2})
    assert [event.data for event in seen] == [{"id": 2}]
    assert (attachment.processed, attachment.unmatched) == (1, 1)


async def test_ignore_counts_quietly_and_the_middleware_still_see_the_event(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    seen: list[Event] = []
    processor = order_processor(seen)
    chain: list[str] = []

    @processor.middleware
    async def record(event: Event, next_handler: Any) -> None:
        chain.append(event.type)
        await next_handler(event)

    bus = EventBus()
    attachment = processor.attach(bus, "order.*", unmatched="ignore")
    async with bus:
        await bus.publish("order.cancelled", {})
    assert chain == ["order.cancelled"] and seen == []
    assert attachment.unmatched == 1
    assert not [record for record in caplog.records if record.name == LOGGER]


async def test_error_makes_an_unmatched_bus_event_a_dead_letter() -> None:
    seen: list[Event] = []
    processor = order_processor(seen)
    chain: list[str] = []

    @processor.middleware
    async def record(event: Event, next_handler: Any) -> None:
        chain.append(event.type)
        await next_handler(event)

    bus = EventBus(retry_policy=RetryPolicy.NONE)
    letters: list[Event] = []
    bus.subscribe("deadletter.#")(letters.append)
    attachment = processor.attach(bus, "order.*", group="billing", unmatched="error")
    async with bus:
        await bus.publish("order.cancelled", {"id": 7})
        await bus.publish("order.placed", {"id": 8})
    assert [event.data for event in seen] == [{"id": 8}]
    assert chain == ["order.placed"]  # refused before the chain, which could swallow it
    assert (attachment.processed, attachment.unmatched) == (1, 1)
    [letter] = bus.dead_letters
    assert isinstance(letter.exception, UnknownTopicError)
    assert "'order.cancelled'" in str(letter.exception)
    assert "['order.placed']" in str(letter.exception)
    [dead] = letters
    assert dead.type == "deadletter.order.cancelled" and dead.data == {"id": 7}
    assert dead.metadata["dlgroup"] == "billing"
    assert "UnknownTopicError" in dead.metadata["dlreason"]


async def test_error_hands_an_unmatched_manager_event_to_its_dead_letters() -> None:
    manager = EventManager()
    processor = order_processor([])
    attachment = processor.attach(manager, "order.*", unmatched="error")
    await manager.emit("order.cancelled", {})
    [letter] = manager.dead_letters
    assert isinstance(letter.exception, UnknownTopicError)
    assert attachment.unmatched == 1


async def test_store_attachment_counts_unmatched_events_apart_and_moves_past_them() -> None:
    store = EventStore()
    seen: list[Event] = []
    processor = order_processor(seen)
    await store.append("o.1", {"type": "order.placed", "data": {"n": 1}})
    await store.append("o.1", {"type": "order.cancelled", "data": {"n": 2}})
    attachment = processor.attach(store, "order.*", unmatched="ignore")
    last = await store.append("o.1", {"type": "order.placed", "data": {"n": 3}})
    await eventually(lambda: len(seen) == 2)
    await eventually(lambda: attachment.last_global_position == last.global_position)
    assert (attachment.processed, attachment.unmatched) == (2, 1)
    await attachment.stop()
    await store.close()


async def test_error_stops_a_store_attachment_at_the_unmatched_event() -> None:
    store = EventStore()
    seen: list[Event] = []
    processor = order_processor(seen)
    await store.append("o.1", {"type": "order.placed", "data": {"n": 1}})
    await store.append("o.1", {"type": "order.cancelled", "data": {"n": 2}})
    await store.append("o.1", {"type": "order.placed", "data": {"n": 3}})
    attachment = processor.attach(store, "order.*", unmatched="error")
    with pytest.raises(UnknownTopicError, match="'order.cancelled'"):
        await attachment.wait()
    assert [event.data["n"] for event in seen] == [1]  # nothing past the refused event
    assert not attachment.running
    await store.close()


async def test_unmatched_warnings_forget_old_types_when_too_many_are_remembered(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    monkeypatch.setattr("pepperpy.event._unmatched._REMEMBERED", 2)
    manager = EventManager()
    processor = order_processor([])
    processor.attach(manager, "order.*")
    for kind in ("order.a", "order.b", "order.c", "order.a"):
        await manager.emit(kind, {})
    # room for two: the third type made room by forgetting both, so 'order.a' is new again
    assert len(warnings_logged(caplog)) == 4


# -- on a broker ---------------------------------------------------------------------


@pytest.fixture
async def bus_url(redis_url: str) -> AsyncIterator[str]:
    namespace = unique_name("unmatched")
    yield f"{redis_url}?namespace={namespace}&partitions=2"
    await delete_redis_keys(redis_url, f"{namespace}:*")


@pytest.mark.redis
async def test_redis_a_typo_between_attach_and_handle_consumes_nothing(bus_url: str) -> None:
    """The audit's repro: the typo used to take the group's events and acknowledge them."""
    bus = EventBus(transport=bus_url)
    processor = EventProcessor()
    processor.handle("orders.*", lambda e: None)
    try:
        with pytest.raises(ConfigurationError, match=r"'order\.\*'.*\['orders\.\*'\]"):
            processor.attach(bus, "order.*", group="billing")
    finally:
        await bus.close()


@pytest.mark.redis
async def test_redis_an_unmatched_event_is_warned_about_or_kept_as_a_dead_letter(
    bus_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    seen: list[Event] = []
    consumer = EventBus(transport=bus_url, retry_policy=RetryPolicy.NONE)
    watcher = EventBus(transport=bus_url)
    publisher = EventBus(transport=bus_url)
    letters: list[Event] = []
    try:
        watcher.subscribe("deadletter.#", group="audit")(letters.append)
        refusing = order_processor(seen).attach(
            consumer, "order.*", group="billing", unmatched="error"
        )
        warning = order_processor(seen).attach(consumer, "order.#", group="shipping")
        await watcher.start()
        await consumer.start()
        await publisher.publish("order.cancelled", {"id": 1}, key="o1")
        await publisher.publish("order.placed", {"id": 2}, key="o2")
        await eventually(lambda: len(seen) == 2 and len(letters) == 1)
        await eventually(lambda: warning.unmatched == 1)
        [dead] = letters
        assert dead.type == "deadletter.order.cancelled" and dead.data == {"id": 1}
        assert dead.metadata["dlgroup"] == "billing"
        assert "UnknownTopicError" in dead.metadata["dlreason"]
        assert (refusing.processed, refusing.unmatched) == (1, 1)
        assert (warning.processed, warning.unmatched) == (1, 1)
        [logged] = warnings_logged(caplog)
        assert "'order.cancelled'" in logged and "(group 'shipping')" in logged
        await settle()
        assert len(letters) == 1  # the warned group's copy was not dead-lettered
    finally:
        for bus in (publisher, consumer, watcher):
            await bus.close()
