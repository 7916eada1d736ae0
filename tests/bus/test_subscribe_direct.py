"""``bus.subscribe(pattern, handler)`` registers directly, as ``manager.on(type, handler)``
does (user audit #12), and ``@bus.subscribe(pattern, group=...)`` stays the decorator.

This module is also checked by ``mypy --strict`` (the last test): its ``assert_type``
lines state what a type checker infers for both forms.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, assert_type

import pytest

from pepperpy.event import Event, EventBus, EventManager
from tests.helpers import assert_mypy_strict_accepts

AsyncHandler = Callable[[Event], Coroutine[Any, Any, None]]
SyncHandler = Callable[[Event], int]


async def test_direct_form_delivers_and_returns_the_handler() -> None:
    bus = EventBus(["orders.*"])
    recorded: list[Any] = []
    appended: list[Event] = []

    async def record(event: Event) -> None:
        recorded.append(event.data)

    returned = bus.subscribe("orders.*", record)
    assert returned is record  # as manager.on(type, handler) and the decorator return it
    keyword = bus.subscribe("orders.placed", handler=appended.append)
    assert keyword == appended.append
    async with bus:
        await bus.publish("orders.placed", 1)
        await bus.publish("orders.paid", 2)
        assert await bus.unsubscribe("orders.*", returned) is True
        await bus.publish("orders.placed", 3)
    assert recorded == [1, 2]
    assert [event.data for event in appended] == [1, 3]


async def test_direct_form_with_a_group_shares_the_work() -> None:
    bus = EventBus(["orders.*"])
    handled: dict[str, list[int]] = {"a": [], "b": [], "all": []}

    def worker_a(event: Event) -> None:
        handled["a"].append(event.data)

    def worker_b(event: Event) -> None:
        handled["b"].append(event.data)

    assert bus.subscribe("orders.*", worker_a, group="billing") is worker_a
    assert bus.subscribe("orders.*", worker_b, group="billing") is worker_b
    bus.subscribe("orders.*", lambda event: handled["all"].append(event.data))
    async with bus:
        for n in range(6):
            await bus.publish("orders.placed", n, key=f"k{n}")
        assert await bus.unsubscribe("orders.*", worker_a, group="billing") is True
        assert await bus.unsubscribe("orders.*", worker_a) is False  # it was in the group
    assert sorted(handled["a"] + handled["b"]) == list(range(6))  # each event once
    assert handled["a"] and handled["b"]  # memory:// round-robins a group's members
    assert handled["all"] == list(range(6))


async def test_decorator_form_with_a_group_is_unchanged() -> None:
    bus = EventBus(["orders.*"])
    seen: list[str] = []
    decorator = bus.subscribe("orders.*", group="billing")
    explicit_none = bus.subscribe("orders.*", None, group="audit")
    assert callable(decorator) and callable(explicit_none)
    async with bus:
        await bus.publish("orders.placed", 0)
        assert seen == []  # subscribe(pattern, group=...) alone registered nothing

        def billing(event: Event) -> None:
            seen.append("billing")

        def audit(event: Event) -> None:
            seen.append("audit")

        assert decorator(billing) is billing
        assert explicit_none(audit) is audit
        await bus.start()  # a late subscription is registered in the background
        await bus.publish("orders.placed", 1)
    assert sorted(seen) == ["audit", "billing"]


def yields(event: Event) -> Iterator[None]:
    yield None


def takes_nothing() -> None:
    """No parameter: it could not be called with the event."""


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        (42, "handler must be callable, got 42"),
        ("billing", "group is keyword-only: subscribe('orders.*', group='billing')"),
        (yields, "is a generator function"),
        (takes_nothing, "cannot be called"),
    ],
)
async def test_direct_form_refuses_a_bad_handler_and_registers_nothing(bad: Any, says: str) -> None:
    bus = EventBus(["orders.*"])
    with pytest.raises(TypeError) as raised:
        bus.subscribe("orders.*", bad)
    assert says in str(raised.value)
    with pytest.raises(TypeError) as grouped:
        bus.subscribe("orders.*", bad, group="billing")
    assert says in str(grouped.value)
    async with bus:
        await bus.publish("orders.placed", 1)
        assert await bus.unsubscribe("orders.*", bad) is False
        assert await bus.unsubscribe("orders.*", bad, group="billing") is False


async def test_direct_form_checks_the_pattern_before_the_handler() -> None:
    bus = EventBus(["orders.*"])
    with pytest.raises(LookupError, match="can match none of the declared topics"):
        bus.subscribe("users.*", print)
    await bus.close()
    with pytest.raises(Exception, match="closed"):
        bus.subscribe("orders.*", print)


# -- static types (checked by mypy in the test below; assert_type does nothing at runtime)


async def on_order(event: Event) -> None:
    """An async handler."""


def count(event: Event) -> int:
    """A sync handler with a result."""
    return 1


async def typed_usage() -> None:
    bus = EventBus(["orders.*"])
    async_handler: AsyncHandler = on_order
    sync_handler: SyncHandler = count
    assert_type(bus.subscribe("orders.*", async_handler), AsyncHandler)
    assert_type(bus.subscribe("orders.*", sync_handler, group="billing"), SyncHandler)
    assert_type(bus.subscribe("orders.*", handler=sync_handler), SyncHandler)
    decorator = bus.subscribe("orders.*", group="audit")
    assert_type(decorator(async_handler), AsyncHandler)
    assert_type(bus.subscribe("orders.*")(sync_handler), SyncHandler)

    @bus.subscribe("orders.*", group="billing")
    async def decorated(event: Event) -> None: ...

    assert_type(await decorated(Event("orders.x")), None)  # the signature was kept
    # the same as the manager's direct form
    assert_type(EventManager().on("orders.*", async_handler), AsyncHandler)


@pytest.mark.slow
def test_mypy_strict_accepts_both_forms() -> None:
    here = Path(__file__).resolve()
    assert_mypy_strict_accepts(here, here.parents[2])
