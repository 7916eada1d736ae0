"""``EventBus.retry_policy`` set after subscribing.

Each subscription took the bus's policy when it was made, so a policy set later (as the
manager allows: "a new one applies to the next failure") was ignored by every existing
subscription, while a processor attached to the bus read the new one and kept, for
retries that never came, which of its handlers had succeeded. A value that is no
``RetryPolicy`` was taken without a word (the constructor refuses it). The policy is
now read at each failure, and checked when set.
"""

from __future__ import annotations

import pytest

from pepperpy.event import Event, EventBus, EventProcessor, RetryPolicy


async def test_a_policy_set_after_subscribing_applies_to_the_next_failure() -> None:
    async with EventBus(retry_policy=RetryPolicy.NONE) as bus:
        tries: list[int] = []

        @bus.subscribe("orders.placed")
        async def charge(event: Event) -> None:
            tries.append(1)
            raise ConnectionError("gateway down")

        bus.retry_policy = RetryPolicy.fixed(max_attempts=3, base_delay=0)
        await bus.publish("orders.placed", {})
        assert len(tries) == 3
        assert bus.dead_letters[-1].attempts == 3

        bus.retry_policy = RetryPolicy.NONE
        await bus.publish("orders.placed", {})
        assert len(tries) == 4
        assert bus.dead_letters[-1].attempts == 1


async def test_an_attached_processor_follows_the_policy_set_later() -> None:
    processor = EventProcessor()
    ran: list[str] = []

    @processor.handle("orders.#")
    async def record(event: Event) -> None:
        ran.append("record")

    @processor.handle("orders.#")
    async def charge(event: Event) -> None:
        ran.append("charge")
        raise ConnectionError("gateway down")

    async with EventBus(retry_policy=RetryPolicy.NONE) as bus:
        processor.attach(bus, "orders.#")
        bus.retry_policy = RetryPolicy.fixed(max_attempts=3, base_delay=0)
        await bus.publish("orders.placed", {})
        # the retries run only the handler that failed
        assert sorted(ran) == ["charge", "charge", "charge", "record"]
        assert bus.dead_letters[-1].attempts == 3


@pytest.mark.parametrize("value", [5, None, "exponential"])
async def test_a_value_that_is_no_policy_is_refused_when_set(value: object) -> None:
    bus = EventBus()
    with pytest.raises(TypeError, match="retry_policy must be a RetryPolicy"):
        bus.retry_policy = value  # type: ignore[assignment]
    assert bus.retry_policy is RetryPolicy.EXPONENTIAL
    await bus.close()
