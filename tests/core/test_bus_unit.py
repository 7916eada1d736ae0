"""EventBus on memory://: what the shared conformance suite does not already cover."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from pepperpy.event import (
    ClosedError,
    ConfigurationError,
    DeadLetter,
    Event,
    EventBus,
    MemoryTransport,
    PatternError,
    RetryPolicy,
    SerializationError,
    Transport,
    UnknownTopicError,
)
from pepperpy.event.transports import transport_from_url

ONE_TRY = RetryPolicy.NONE


# -- declared topics ------------------------------------------------------------------


def test_declared_topics_are_validated() -> None:
    with pytest.raises(PatternError):
        EventBus(["users.*", "orders..x"])
    with pytest.raises(TypeError, match="list of patterns"):
        EventBus("users.*")  # type: ignore[arg-type]
    bus = EventBus(("users.*", "orders.#"))
    assert bus.topics == ("users.*", "orders.#")
    assert EventBus().topics is None


async def test_publish_to_undeclared_or_malformed_topics() -> None:
    bus = EventBus(["users.*", "orders.#"])
    for topic in ("users", "users.a.b", "billing.paid"):
        with pytest.raises(UnknownTopicError, match=topic.replace(".", r"\.")):
            await bus.publish(topic, {})
    for topic in ("users.*", "a..b", ""):
        with pytest.raises(PatternError):
            await bus.publish(topic, {})
    await bus.publish("users.login", {})
    await bus.publish("orders", {})
    await bus.publish("orders.a.b.c", {})
    await bus.close()


def test_unknown_topic_error_is_a_lookup_error() -> None:
    bus = EventBus(["users.*"])
    with pytest.raises(LookupError):
        bus.subscribe("orders.*")


async def test_dead_letter_topics_of_declared_topics_can_be_subscribed() -> None:
    bus = EventBus(["users.*"], retry_policy=ONE_TRY)
    dead: list[Event] = []
    bus.subscribe("deadletter.users.*")(dead.append)
    with pytest.raises(UnknownTopicError):
        bus.subscribe("deadletter.orders.*")

    @bus.subscribe("users.*")
    def fails(event: Event) -> None:
        raise RuntimeError("nope")

    await bus.publish("users.login", {"u": 1})
    assert [e.type for e in dead] == ["deadletter.users.login"]
    await bus.close()


async def test_a_topic_of_the_longest_length_can_still_be_dead_lettered() -> None:
    # the 1,024-byte name limit would refuse "deadletter." + such a topic; a dead-letter
    # topic may exceed it by its prefix, so every topic's failures can be dead-lettered
    topic = "t." + "".join(chr(0x61 + (i * 31) % 26) for i in range(1022))
    assert len(topic.encode()) == 1024
    bus = EventBus(retry_policy=ONE_TRY)
    dead: list[Event] = []
    bus.subscribe("deadletter.#")(dead.append)

    @bus.subscribe(topic)
    def fails(event: Event) -> None:
        raise RuntimeError("nope")

    await bus.publish(topic, {"u": 1})
    assert [e.type for e in dead] == ["deadletter." + topic]
    assert len(bus.dead_letters) == 1
    with pytest.raises(PatternError, match="longer than 1035 bytes"):
        await bus.publish("deadletter." + topic + "x", {})
    await bus.close()


@pytest.mark.parametrize("group", ["billing\ud800", "a\x00b", "g" * 1025])
def test_a_group_name_no_broker_can_carry_is_refused_when_subscribing(group: str) -> None:
    # a lone surrogate used to raise UnicodeEncodeError from the name digest, on every
    # transport; a NUL or an over-long name is refused like any other name
    bus = EventBus()
    with pytest.raises(ValueError, match="group"):
        bus.subscribe("orders.*", group=group)(lambda event: None)


# -- subscribe and publish arguments ------------------------------------------------------


@pytest.mark.parametrize(("group", "error"), [("", ValueError), (5, TypeError), (b"g", TypeError)])
def test_bad_group_is_refused(group: Any, error: type[Exception]) -> None:
    # a group that is no str is a wrong type (docs/errors.md)
    with pytest.raises(error, match="group must be a non-empty str") as caught:
        EventBus().subscribe("a.*", group=group)
    assert type(caught.value) is error


def test_subscribe_validates_pattern_and_handler() -> None:
    bus = EventBus()
    with pytest.raises(PatternError):
        bus.subscribe("a..b")
    with pytest.raises(TypeError):
        bus.subscribe("a.*")("not callable")  # type: ignore[type-var]


def test_bad_retry_policy_is_refused() -> None:
    with pytest.raises(TypeError):
        EventBus(retry_policy=3)  # type: ignore[arg-type]


async def test_bad_key_type_is_refused_and_nothing_is_delivered() -> None:
    bus = EventBus()
    got: list[Event] = []
    bus.subscribe("a.*")(got.append)
    with pytest.raises(TypeError, match="key"):
        await bus.publish("a.b", {}, key=7)  # type: ignore[arg-type]
    assert got == []
    await bus.close()


async def test_bad_message_data_is_refused_before_delivery() -> None:
    bus = EventBus()
    got: list[Event] = []
    bus.subscribe("a.*")(got.append)
    with pytest.raises(SerializationError):
        await bus.publish("a.b", {"x": float("nan")})
    assert got == []
    await bus.close()


async def test_publish_returns_the_event_subscribers_received() -> None:
    bus = EventBus()
    got: list[Event] = []
    bus.subscribe("a.*")(got.append)
    sent = await bus.publish("a.b", [1, 2], headers={"tenant": "acme"}, key="k1")
    assert got == [sent]
    assert sent.type == "a.b" and sent.data == [1, 2]
    assert sent.metadata == {"tenant": "acme", "partitionkey": "k1"}
    await bus.close()


async def test_a_ready_event_published_to_another_topic_is_retyped_keeping_its_id() -> None:
    bus = EventBus()
    got: list[Event] = []
    bus.subscribe("b.*")(got.append)
    original = Event("a.x", {"n": 1})
    sent = await bus.publish("b.x", original)
    assert sent.type == "b.x" and sent.id == original.id and sent.data == {"n": 1}
    assert got == [sent]
    assert original.type == "a.x"
    await bus.close()


async def test_group_identity_is_group_plus_pattern() -> None:
    bus = EventBus()
    handled: dict[str, int] = {"star-1": 0, "star-2": 0, "hash": 0}
    bus.subscribe("jobs.*", group="g")(
        lambda e: handled.__setitem__("star-1", handled["star-1"] + 1)
    )
    bus.subscribe("jobs.*", group="g")(
        lambda e: handled.__setitem__("star-2", handled["star-2"] + 1)
    )
    bus.subscribe("jobs.#", group="g")(lambda e: handled.__setitem__("hash", handled["hash"] + 1))
    for _ in range(10):
        await bus.publish("jobs.run", None)
    assert handled["star-1"] + handled["star-2"] == 10, "one group: shared"
    assert handled["star-1"] > 0 and handled["star-2"] > 0
    assert handled["hash"] == 10, "same group name, other pattern: a group of its own"
    await bus.close()


# -- transports -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "url", ["kafka://localhost", "memory://somewhere", "memory://?x=1", "http://x", "nonsense"]
)
def test_unknown_or_malformed_transport_urls(url: str) -> None:
    with pytest.raises(ConfigurationError):
        EventBus(transport=url)
    with pytest.raises(ValueError):
        transport_from_url(url)


def test_transport_must_be_a_url_or_a_transport() -> None:
    with pytest.raises(TypeError):
        EventBus(transport=42)  # type: ignore[arg-type]


@pytest.mark.parametrize("url", ["memory://", "memory:", "memory"])
def test_memory_urls(url: str) -> None:
    assert isinstance(EventBus(transport=url).transport, MemoryTransport)


async def test_a_transport_object_is_used_as_given() -> None:
    transport = MemoryTransport()
    bus = EventBus(transport=transport)
    assert bus.transport is transport
    assert transport.distributed is False
    assert isinstance(transport, Transport)


async def test_a_custom_transport_only_needs_the_abstract_methods() -> None:
    class Recording(Transport):
        def __init__(self) -> None:
            self.published: list[Event] = []
            self.subscribed: list[str] = []
            self.closed = False

        async def publish(self, event: Event, *, key: str | None = None) -> None:
            self.published.append(event)

        async def subscribe(self, subscription: Any) -> None:
            self.subscribed.append(subscription.pattern)

        async def close(self) -> None:
            self.closed = True

    transport = Recording()
    async with EventBus(transport=transport) as bus:
        bus.subscribe("a.*")(lambda e: None)
        sent = await bus.publish("a.b", 1)
    assert transport.published == [sent]
    assert transport.subscribed == ["a.*"]
    assert transport.closed


# -- lifecycle -------------------------------------------------------------------------


async def test_close_semantics() -> None:
    bus = EventBus()
    bus.subscribe("a.*")(lambda e: None)
    await bus.close()
    await bus.close()  # idempotent
    with pytest.raises(ClosedError):
        await bus.publish("a.b", 1)
    with pytest.raises(ClosedError):
        await bus.start()
    with pytest.raises(ClosedError):
        async with bus:
            pass


async def test_async_with_starts_and_closes() -> None:
    transport = MemoryTransport()
    async with EventBus(transport=transport) as bus:
        got: list[int] = []
        bus.subscribe("x.*")(lambda e: got.append(e.data))
        await bus.publish("x.y", 1)
    assert got == [1]
    with pytest.raises(ClosedError):
        await bus.publish("x.y", 2)


async def test_publish_starts_the_bus_implicitly_and_registers_late_subscriptions() -> None:
    bus = EventBus()
    early: list[int] = []
    bus.subscribe("x.*")(lambda e: early.append(e.data))
    await bus.publish("x.y", 1)
    late: list[int] = []
    bus.subscribe("x.*")(lambda e: late.append(e.data))
    await bus.publish("x.y", 2)
    assert early == [1, 2] and late == [2]
    await bus.close()


def test_subscribing_needs_no_running_loop() -> None:
    bus = EventBus(["users.*"])
    got: list[Any] = []

    @bus.subscribe("users.*", group="g")
    async def handler(event: Event) -> None:
        got.append(event.data)

    async def main() -> None:
        async with bus:
            await bus.publish("users.login", {"u": 1})

    asyncio.run(main())
    assert got == [{"u": 1}]


# -- failures --------------------------------------------------------------------------


async def test_on_error_callbacks_sync_and_async_receive_dead_letters(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = EventBus(retry_policy=RetryPolicy.fixed(max_attempts=2, base_delay=0))
    letters: list[tuple[str, DeadLetter]] = []

    @bus.on_error
    async def async_callback(letter: DeadLetter) -> None:
        await asyncio.sleep(0.01)
        letters.append(("async", letter))

    bus.on_error(lambda letter: letters.append(("sync", letter)))

    def broken(letter: DeadLetter) -> None:
        raise RuntimeError("callback failed")

    bus.on_error(broken)

    @bus.subscribe("pay.*")
    def declined(event: Event) -> None:
        raise ValueError("declined")

    with caplog.at_level(logging.ERROR, logger="pepperpy.event.bus"):
        sent = await bus.publish("pay.charge", {"amount": 1})
    assert sorted(kind for kind, _ in letters) == ["async", "sync"]
    letter = letters[0][1]
    assert letter.event.id == sent.id and letter.handler is declined
    assert letter.attempts == 2 and isinstance(letter.exception, ValueError)
    assert "callback failed" in caplog.text
    failures = [r for r in caplog.records if r.exc_info and r.exc_info[1] is letter.exception]
    assert failures, "the handler failure is logged with its traceback"
    with pytest.raises(TypeError):
        bus.on_error("not callable")  # type: ignore[type-var]
    await bus.close()


async def test_a_failing_dead_letter_handler_is_not_dead_lettered_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = EventBus(retry_policy=ONE_TRY)
    seen: list[str] = []

    @bus.subscribe("#")
    def fails_everything(event: Event) -> None:
        seen.append(event.type)
        raise RuntimeError("always")

    with caplog.at_level(logging.CRITICAL, logger="pepperpy.event.bus"):
        await bus.publish("a.b", None)
    assert seen == ["a.b", "deadletter.a.b"]
    assert len(bus.dead_letters) == 2
    await bus.close()


async def test_close_waits_for_handlers_started_by_a_publish() -> None:
    bus = EventBus()
    finished: list[int] = []

    @bus.subscribe("slow.*")
    async def slow(event: Event) -> None:
        await asyncio.sleep(0.05)
        finished.append(1)

    publishing = asyncio.ensure_future(bus.publish("slow.x", None))
    await asyncio.sleep(0.01)
    await bus.close()
    assert finished == [1]
    await publishing


async def test_publishing_a_ready_event_with_key_or_headers_leaves_it_unchanged() -> None:
    bus = EventBus()
    got: list[Event] = []
    bus.subscribe("a.*")(got.append)
    original = Event("a.b", {"n": 1}, {"origin": "test"})
    keyed = await bus.publish("a.b", original, key="k1", headers={"tenant": "acme"})
    plain = await bus.publish("a.b", original)
    assert original.metadata == {"origin": "test"}, "the caller's event is not modified"
    assert keyed.id == plain.id == original.id
    assert keyed.metadata == {"origin": "test", "tenant": "acme", "partitionkey": "k1"}
    assert plain is original and "partitionkey" not in plain.metadata
    assert [e.metadata.get("partitionkey") for e in got] == ["k1", None]
    await bus.close()


async def test_on_error_has_the_same_three_forms_as_the_manager() -> None:
    bus = EventBus(retry_policy=ONE_TRY)
    seen: list[str] = []

    @bus.on_error
    def bare(letter: DeadLetter) -> None:
        seen.append("bare")

    @bus.on_error()
    async def called(letter: DeadLetter) -> None:
        seen.append("called")

    def direct(letter: DeadLetter) -> None:
        seen.append("direct")

    assert bus.on_error(direct) is direct
    assert bare.__name__ == "bare" and called.__name__ == "called"
    bus.subscribe("x.*")(lambda e: 1 / 0)
    with pytest.raises(TypeError):
        bus.on_error()(42)  # type: ignore[type-var]
    await bus.publish("x.y", None)
    assert sorted(seen) == ["bare", "called", "direct"]
    await bus.close()
