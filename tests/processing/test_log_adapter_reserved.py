"""LogMiddleware never changes an event's outcome through its own logging: a
LoggerAdapter whose ``extra`` holds a LogRecord attribute name (``module``, ``name``...)
has it emitted as ``field_<name>``, as ``fields=`` does (``makeRecord`` raised KeyError
after the handler ran, so a retry ran it again), and a logger that fails anyway (a
raising filter) is reported through the module's fallback logger (audit 20)."""

from __future__ import annotations

import logging

import pytest

from pepperpy.event import Event, EventProcessor, LogMiddleware
from tests.processing.conftest import Capture

FALLBACK = "pepperpy.event.middleware.observability"


def processor_with(log: LogMiddleware, runs: list[str], fail: bool = False) -> EventProcessor:
    processor = EventProcessor().use(log)

    @processor.handle("order.paid")
    def paid(event: Event) -> None:
        runs.append(event.id)
        if fail:
            raise ConnectionError("down")

    return processor


async def test_an_adapters_reserved_keys_are_renamed(
    captured: tuple[logging.Logger, Capture],
) -> None:
    logger, capture = captured
    inner = logging.LoggerAdapter(logger, {"name": "inner", "zone": "eu"})
    adapter = logging.LoggerAdapter(inner, {"module": "billing", "process": "p-1"})
    runs: list[str] = []
    await processor_with(LogMiddleware(adapter), runs).process(Event("order.paid"))
    assert len(runs) == 1
    [record] = capture.records
    assert record.outcome == "ok"
    assert (record.field_module, record.field_process, record.field_name) == (
        "billing",
        "p-1",
        "inner",
    )
    assert record.zone == "eu"
    assert record.name == logger.name  # the LogRecord's own attributes are untouched
    assert record.module != "billing"


async def test_a_failure_keeps_its_own_exception_with_such_an_adapter(
    captured: tuple[logging.Logger, Capture],
) -> None:
    logger, capture = captured
    adapter = logging.LoggerAdapter(logger, {"module": "billing"})
    runs: list[str] = []
    with pytest.raises(ConnectionError):
        await processor_with(LogMiddleware(adapter), runs, fail=True).process(Event("order.paid"))
    [record] = capture.records
    assert (record.outcome, record.field_module) == ("error", "billing")


async def test_a_logger_that_raises_is_reported_and_the_outcome_stands(
    captured: tuple[logging.Logger, Capture], caplog: pytest.LogCaptureFixture
) -> None:
    logger, capture = captured

    def broken(record: logging.LogRecord) -> bool:
        raise RuntimeError("filter broke")

    logger.addFilter(broken)
    runs: list[str] = []
    try:
        with caplog.at_level(logging.ERROR, FALLBACK):
            await processor_with(LogMiddleware(logger), runs).process(Event("order.paid"))
            with pytest.raises(ConnectionError):  # the handler's error, not the filter's
                await processor_with(LogMiddleware(logger), runs, fail=True).process(
                    Event("order.paid")
                )
    finally:
        logger.removeFilter(broken)
    assert len(runs) == 2
    assert capture.records == []
    failures = [r for r in caplog.records if r.name == FALLBACK]
    assert len(failures) == 2
    assert "LogMiddleware could not log order.paid" in failures[0].getMessage()
    assert failures[0].exc_info is not None
    assert isinstance(failures[0].exc_info[1], RuntimeError)
