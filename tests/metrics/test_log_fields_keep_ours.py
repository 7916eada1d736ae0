"""LogMiddleware: a ``fields=`` entry named like one of its own fields does not replace it.

A business field such as ``{"outcome": "paid"}`` made the record of a failed event read
``outcome="paid"`` (and ``duration_ms`` or ``event_id`` could be replaced the same way);
the middleware's own fields stay, the clashing one is kept as ``field_<name>``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from pepperpy.event import Event
from pepperpy.event.middleware import LogMiddleware


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def logged() -> Iterator[tuple[logging.Logger, Records]]:
    logger = logging.getLogger("tests.metrics.log_fields_keep_ours")
    handler = Records()
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield logger, handler
    finally:
        logger.removeHandler(handler)
        logger.propagate = True


async def test_a_failed_event_keeps_its_outcome_beside_a_business_outcome_field(
    logged: tuple[logging.Logger, Records],
) -> None:
    logger, handler = logged
    event = Event("payment.settled", {"id": 7})
    log = LogMiddleware(
        logger,
        fields=lambda e: {"outcome": "paid", "duration_ms": -1, "event_id": "x", "tenant": "t"},
    )

    async def fail(_: Event) -> None:
        raise ValueError("card declined")

    with pytest.raises(ValueError, match="card declined"):
        await log(event, fail)
    (record,) = handler.records
    assert record.outcome == "error"  # type: ignore[attr-defined]
    assert record.event_id == event.id  # type: ignore[attr-defined]
    assert record.duration_ms >= 0  # type: ignore[attr-defined]
    assert record.field_outcome == "paid"  # type: ignore[attr-defined]
    assert record.field_duration_ms == -1  # type: ignore[attr-defined]
    assert record.field_event_id == "x"  # type: ignore[attr-defined]
    assert record.tenant == "t"  # type: ignore[attr-defined]


async def test_through_an_adapter_the_clashing_field_is_kept_renamed_too(
    logged: tuple[logging.Logger, Records],
) -> None:
    logger, handler = logged
    adapter = logging.LoggerAdapter(logger, {"service": "billing"})
    log = LogMiddleware(adapter, fields=lambda e: {"outcome": "paid"})

    async def ok(_: Event) -> None:
        return None

    await log(Event("payment.settled", {}), ok)
    (record,) = handler.records
    assert record.outcome == "ok"  # type: ignore[attr-defined]
    assert record.field_outcome == "paid"  # type: ignore[attr-defined]
    assert record.service == "billing"  # type: ignore[attr-defined]
