"""LogMiddleware and TraceMiddleware report every outcome: through a LoggerAdapter too."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator, MutableMapping
from typing import Any

import pytest

from pepperpy.event import Event, EventProcessor, LogMiddleware

FIELDS = ("event_type", "event_id", "outcome", "duration_ms")


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, Capture]]:
    """A logger of its own (unique name) and what it logged."""
    logger = logging.getLogger(f"test.outcomes.{uuid.uuid4().hex}")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    capture = Capture()
    logger.addHandler(capture)
    yield logger, capture
    logger.removeHandler(capture)


def failing_processor(log: LogMiddleware) -> EventProcessor:
    processor = EventProcessor().use(log)

    @processor.handle("job.run")
    def job(event: Event) -> None:
        if event.data == "fail":
            raise ConnectionError("down")

    return processor


async def run_ok_and_failing(processor: EventProcessor) -> tuple[Event, Event]:
    ok, failing = Event("job.run", "ok", {"tenant": "m1"}), Event("job.run", "fail")
    await processor.process(ok)
    with pytest.raises(ConnectionError):
        await processor.process(failing)
    return ok, failing


async def test_a_logger_adapter_keeps_the_structured_fields_and_its_own(
    captured: tuple[logging.Logger, Capture],
) -> None:
    logger, capture = captured
    adapter = logging.LoggerAdapter(logger, {"tenant": "t1", "region": "eu"})
    log = LogMiddleware(adapter, fields=lambda e: {"tenant": e.metadata.get("tenant", "-")})
    ok, failing = await run_ok_and_failing(failing_processor(log))
    assert len(capture.records) == 2
    for record, event, outcome in zip(capture.records, (ok, failing), ("ok", "error"), strict=True):
        assert {field: hasattr(record, field) for field in FIELDS} == dict.fromkeys(FIELDS, True)
        assert (record.event_type, record.event_id, record.outcome) == (
            "job.run",
            event.id,
            outcome,
        )
        assert record.region == "eu"  # the adapter's own field stays
    # fields() is the library's: it wins over the adapter's value of the same key
    assert [r.tenant for r in capture.records] == ["m1", "-"]
    failure = capture.records[1]
    assert failure.levelno == logging.ERROR
    assert failure.exc_info is not None and isinstance(failure.exc_info[1], ConnectionError)


class Prefixed(logging.LoggerAdapter):  # type: ignore[type-arg]
    """An adapter with its own process(): it must still run."""

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        msg, kwargs = super().process(msg, kwargs)
        return f"[{self.extra['request']}] {msg}", kwargs


async def test_a_custom_and_nested_adapter_still_process_the_record(
    captured: tuple[logging.Logger, Capture],
) -> None:
    logger, capture = captured
    inner = logging.LoggerAdapter(logger, {"service": "billing", "zone": "inner"})
    adapter = Prefixed(inner, {"request": "r-7", "zone": "outer"})
    ok, _ = await run_ok_and_failing(failing_processor(LogMiddleware(adapter)))
    first = capture.records[0]
    assert first.getMessage().startswith("[r-7] processed job.run")
    assert (first.outcome, first.event_id, first.request) == ("ok", ok.id, "r-7")
    assert capture.records[1].outcome == "error"
    assert [(r.service, r.zone) for r in capture.records] == [("billing", "outer")] * 2


async def test_a_disabled_level_through_an_adapter_logs_nothing(
    captured: tuple[logging.Logger, Capture],
) -> None:
    logger, capture = captured
    logger.setLevel(logging.WARNING)
    adapter = logging.LoggerAdapter(logger, {"tenant": "t1"})
    await run_ok_and_failing(failing_processor(LogMiddleware(adapter)))
    assert [(r.levelno, r.outcome) for r in capture.records] == [(logging.ERROR, "error")]
