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
