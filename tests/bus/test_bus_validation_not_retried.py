"""A ValidationError is not retried unless the retry policy names it.

A validator refuses the same data the same way every time. The bus's default policy
(``RetryPolicy.EXPONENTIAL``, ``retry_on=(Exception,)``) retried it anyway: a processor
with a ``ValidateMiddleware`` attached to a bus refused an invalid event five times,
over about 1.3 s spent inside ``publish`` on ``memory://``, before the dead letter it
was always going to be. The same on the manager and in a ``RetryMiddleware``. A policy
whose ``retry_on`` names ``ValidationError`` (or a subclass) still retries it.
"""

from __future__ import annotations

import asyncio

import pytest

from pepperpy.event import (
    Event,
    EventBus,
    EventManager,
    EventProcessor,
    EventValidator,
    RetryMiddleware,
    RetryPolicy,
    ValidateMiddleware,
    ValidationError,
)
from pepperpy.event.transports.redis import RedisTransport
from tests.helpers import eventually

FAST = RetryPolicy.exponential(max_attempts=5, base_delay=0.001, max_delay=0.002)


def _validator() -> EventValidator:
    validator = EventValidator()

    @validator.schema("order.placed")
    class OrderPlaced:
        order_id: str
        amount: float

    return validator


async def test_bus_default_policy_dead_letters_invalid_data_at_its_first_refusal() -> None:
    refused: list[ValidationError] = []
    handled: list[Event] = []
    validator = _validator()
    processor = EventProcessor()

    @processor.middleware
    async def watch(event: Event, next_handler: object) -> None:
        try:
            await next_handler(event)  # type: ignore[operator]
        except ValidationError as exc:
            refused.append(exc)
            raise

    processor.use(ValidateMiddleware(validator))
    processor.handle("order.placed", handled.append)
    bus = EventBus(["order.*"])  # the default retry_policy, EXPONENTIAL
    processor.attach(bus, "order.*")
    async with bus:
        await bus.publish("order.placed", {"order_id": "a", "amount": 10})
        await bus.publish("order.placed", {"order_id": "b", "amount": "ten"})
    assert [event.data["order_id"] for event in handled] == ["a"]
    assert len(refused) == 1  # five refusals over ~1.3 s before
    [letter] = bus.dead_letters
    assert letter.attempts == 1
    assert isinstance(letter.exception, ValidationError)


async def test_bus_plain_handler_validating_is_not_retried_but_other_errors_are() -> None:
    validator = _validator()
    calls: list[str] = []
    bus = EventBus(retry_policy=FAST)

    @bus.subscribe("order.*")
    async def handler(event: Event) -> None:
        calls.append(event.data["order_id"])
        if event.data["order_id"] == "flaky":
            raise ConnectionError("the database went away")
        await validator.validate(event.type, event.data)

    async with bus:
        await bus.publish("order.placed", {"order_id": "bad", "amount": "ten"})
        await bus.publish("order.placed", {"order_id": "flaky", "amount": 1})
    assert calls == ["bad"] + ["flaky"] * 5
    assert [letter.attempts for letter in bus.dead_letters] == [1, 5]


async def test_manager_and_retry_middleware_do_not_retry_validation_errors() -> None:
    validator = _validator()
    manager = EventManager(retry_policy=FAST)
    tries: list[int] = []

    async def handler(event: Event) -> None:
        tries.append(1)
        await validator.validate(event.type, event.data)

    manager.on("order.placed", handler)
    await manager.emit("order.placed", {"order_id": 1})  # order_id must be a str
    assert len(tries) == 1
    [letter] = manager.dead_letters
    assert letter.attempts == 1
    await manager.close()

    processor = EventProcessor().use(RetryMiddleware(FAST))
    processor.handle("order.placed", handler)
    tries.clear()
    with pytest.raises(ValidationError):
        await processor.process(Event("order.placed", {"order_id": 1}))
    assert len(tries) == 1


async def test_several_handlers_failing_with_a_validation_error_among_them() -> None:
    # a RetryMiddleware retries the ExceptionGroup of several failed handlers when
    # every error in it is retryable: one refused by validation is not
    validator = _validator()
    processor = EventProcessor().use(RetryMiddleware(FAST))
    tries: list[str] = []

    async def validating(event: Event) -> None:
        tries.append("validating")
        await validator.validate(event.type, event.data)

    async def flaky(event: Event) -> None:
        tries.append("flaky")
        raise ConnectionError("down")

    processor.handle("order.placed", validating)
    processor.handle("order.placed", flaky)
    with pytest.raises(ExceptionGroup):
        await processor.process(Event("order.placed", {"order_id": 1}))
    assert sorted(tries) == ["flaky", "validating"]


class _SchemaNotLoadedYet(ValidationError):
    """An application's own refusal that may pass later (its schema still loading)."""


async def test_retry_on_naming_validation_error_still_retries_it() -> None:
    validator = _validator()
    policy = RetryPolicy.fixed(max_attempts=3, base_delay=0.001, retry_on=ValidationError)
    bus = EventBus(retry_policy=policy)
    tries: list[int] = []

    @bus.subscribe("order.*")
    async def handler(event: Event) -> None:
        tries.append(1)
        await validator.validate(event.type, event.data)

    async with bus:
        await bus.publish("order.placed", {"order_id": 1})
    assert len(tries) == 3
    assert bus.dead_letters[0].attempts == 3

    # a subclass named retries that subclass only; a broad class retries neither
    named = RetryPolicy.fixed(max_attempts=3, retry_on=(_SchemaNotLoadedYet, OSError))
    own = _SchemaNotLoadedYet([])
    assert named.should_retry(own, 1)
    assert not named.should_retry(ValidationError([]), 1)
    broad = RetryPolicy.fixed(max_attempts=3, retry_on=(ValueError, Exception))
    assert not broad.should_retry(own, 1)
    assert not broad.should_retry(ExceptionGroup("two", [own, OSError()]), 1)
    assert broad.should_retry(ExceptionGroup("two", [ValueError(), OSError()]), 1)
    assert broad.should_retry(ValueError("not a validation"), 1)


@pytest.mark.redis
async def test_redis_bus_dead_letters_invalid_data_after_one_refusal(
    redis_url: str, namespace: str
) -> None:
    validator = _validator()
    processor = EventProcessor()
    refusals: list[int] = []

    @processor.middleware
    async def watch(event: Event, next_handler: object) -> None:
        try:
            await next_handler(event)  # type: ignore[operator]
        except ValidationError:
            refusals.append(1)
            raise

    processor.use(ValidateMiddleware(validator))
    processor.handle("order.placed", lambda event: None)
    transport = RedisTransport(redis_url, namespace=namespace, partitions=1, trim_interval=None)
    bus = EventBus(transport=transport)  # the default EXPONENTIAL policy
    processor.attach(bus, "order.*", group="billing")
    kept: list[Event] = []
    bus.subscribe("deadletter.#", kept.append)
    async with asyncio.timeout(60):
        async with bus:
            await bus.publish("order.placed", {"order_id": 7})
            await eventually(lambda: bool(kept))
    assert refusals == [1]
    assert bus.dead_letters[0].attempts == 1
