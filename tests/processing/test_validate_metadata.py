"""ValidateMiddleware hands the handlers an upgraded event sharing the original's metadata.

``metadata`` is the one mutable part of an event. The validated copy had a copy of it,
so what a handler wrote there never reached the middleware further out: a
``LogMiddleware`` ``fields()`` reading a handler's result, say.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from pepperpy.event import (
    Event,
    EventProcessor,
    EventValidator,
    LogMiddleware,
    ValidateMiddleware,
)
from pepperpy.event._processor import NextHandler


async def test_what_a_handler_writes_in_metadata_reaches_the_middleware_outside(
    caplog: pytest.LogCaptureFixture,
) -> None:
    validator = EventValidator()

    @validator.schema("order.placed")
    class OrderPlaced:
        amount: float

    seen: dict[str, Any] = {}

    async def outer(event: Event, next_handler: NextHandler) -> None:
        event.metadata["tenant"] = "acme"  # before: the handler sees it
        await next_handler(event)
        seen.update(event.metadata)

    processor = EventProcessor().use(
        LogMiddleware(fields=lambda event: {"charged": event.metadata.get("charged")}),
        outer,
        ValidateMiddleware(validator),
    )

    @processor.handle("order.*")
    def charge(event: Event) -> None:
        assert event.data["amount"] == 5.0 and event.metadata["tenant"] == "acme"
        event.metadata["charged"] = "ch_1"

    with caplog.at_level(logging.INFO, logger="pepperpy.event.processor"):
        await processor.process(Event("order.placed", {"amount": 5}))
    assert seen == {"tenant": "acme", "charged": "ch_1"}
    [record] = [r for r in caplog.records if r.getMessage().startswith("processed")]
    assert record.charged == "ch_1"  # type: ignore[attr-defined]


async def test_a_stored_event_shares_its_metadata_with_the_handlers_too() -> None:
    # an event read from a store (every event a store attachment delivers) keeps its
    # position in the upgraded copy; that step copied the metadata again
    from pepperpy.event import EventStore

    validator = EventValidator()
    validator.register("order.placed", {"type": "object"})
    store = EventStore()
    await store.append("order.1", Event("order.placed", {"n": 1}))
    (stored,) = await store.get_stream("order.1")
    seen: dict[str, Any] = {}

    async def outer(event: Event, next_handler: NextHandler) -> None:
        await next_handler(event)
        seen.update(event.metadata)

    processor = EventProcessor().use(outer, ValidateMiddleware(validator))
    got: list[Event] = []

    @processor.handle("order.placed")
    def handle(event: Event) -> None:
        event.metadata["handled_by"] = "handler"
        got.append(event)

    await processor.process(stored)
    assert seen == {"handled_by": "handler"}
    assert (got[0].stream, got[0].position) == ("order.1", 0)
    await store.close()
