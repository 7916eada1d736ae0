"""A processor's patterns and a bus's declared topics given as ``StrEnum`` members.

``EventManager.on`` and ``EventBus.subscribe`` keep the plain str a member holds, but
``EventProcessor.handle`` kept the member itself: its patterns then reached messages as
``<OldStyle.CREATED: 'user.created'>`` (an ``attach`` whose pattern can match none of
the handlers names them), and a ``str`` subclass with its own ``__str__`` as that text.
``EventBus(topics)`` kept the members too: ``bus.topics`` and ``UnknownTopicError``
listed them that way.
"""

from __future__ import annotations

from enum import Enum, StrEnum
from typing import Any

import pytest

from pepperpy.event import ConfigurationError, Event, EventManager, EventProcessor


class Types(StrEnum):
    CREATED = "user.created"
    ORDERS = "order.*"


class OldStyle(str, Enum):  # noqa: UP042 - the pre-StrEnum idiom, still common
    CREATED = "user.created"
    ORDERS = "order.*"


class Named(str):
    def __str__(self) -> str:
        return "not the pattern"


CASES: list[tuple[Any, Any]] = [
    (Types.CREATED, Types.ORDERS),
    (OldStyle.CREATED, OldStyle.ORDERS),
    (Named("user.created"), Named("order.*")),
]


@pytest.mark.parametrize("created, orders", CASES, ids=["StrEnum", "str-Enum", "str-subclass"])
async def test_handle_keeps_the_plain_str_of_a_member(created: Any, orders: Any) -> None:
    processor = EventProcessor()
    seen: list[str] = []

    @processor.handle(created)
    async def handler(event: Event) -> None:
        seen.append(event.type)

    assert processor._patterns() == ["user.created"]
    assert all(type(pattern) is str for pattern in processor._patterns())
    with pytest.raises(ConfigurationError) as caught:
        processor.attach(EventManager(), orders)
    message = str(caught.value)
    assert "subscription 'order.*'" in message
    assert "['user.created']" in message
    await processor.process(Event("user.created"))
    assert seen == ["user.created"]
    assert processor.remove_handler("user.created", handler)
    assert processor.handlers("user.created") == []


@pytest.mark.parametrize("created, orders", CASES, ids=["StrEnum", "str-Enum", "str-subclass"])
async def test_declared_bus_topics_keep_the_plain_str_of_a_member(
    created: Any, orders: Any
) -> None:
    from pepperpy.event import EventBus, UnknownTopicError

    bus = EventBus(iter([orders]))  # any iterable, a one-shot one too
    try:
        assert bus.topics == ("order.*",)
        assert all(type(topic) is str for topic in bus.topics)
        with pytest.raises(UnknownTopicError, match=r"declared topics \['order\.\*'\]"):
            await bus.publish("user.created", {})
        with pytest.raises(UnknownTopicError, match=r"declared topics \['order\.\*'\]"):
            bus.subscribe("user.*", print)
        seen: list[str] = []
        bus.subscribe(orders, lambda event: seen.append(event.type))
        await bus.publish("order.placed", {})
        assert seen == ["order.placed"]
    finally:
        await bus.close()
