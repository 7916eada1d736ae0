"""A failed ``run_in_background`` that nobody waits on is reported once, by the library.

The attachment's task logged its ERROR ("processor stopped (background run): ..."), and
when the attachment was dropped asyncio reported the same failure again at garbage
collection ("Task exception was never retrieved"). ``wait()`` still raises it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from pepperpy.event import Attachment, Event, EventProcessor

_WAIT = 5


class SourceBroke(Exception):
    pass


class HandlerBroke(Exception):
    pass


async def _failing_source() -> AsyncIterator[Event]:
    yield Event("job.first", {})
    raise SourceBroke("source broke")


def _processor(*, failing_handler: bool) -> EventProcessor:
    processor = EventProcessor()

    def handle(event: Event) -> None:
        if failing_handler:
            raise HandlerBroke(f"handler broke on {event.type}")

    processor.handle("job.*", handle)
    return processor


@contextlib.contextmanager
def _processor_log() -> Iterator[list[tuple[int, str, type[BaseException] | None]]]:
    """The processor's log records, kept as (level, message, exception type) only: a
    record kept whole (caplog, pytest's report capture) holds the traceback, and through
    it the attachment's task, which garbage collection would then never reach."""
    seen: list[tuple[int, str, type[BaseException] | None]] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            error = record.exc_info[1] if record.exc_info else None
            seen.append((record.levelno, record.getMessage(), type(error) if error else None))

    logger = logging.getLogger("pepperpy.event.processor")
    handler, propagate = Keep(logging.DEBUG), logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield seen
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


@contextlib.contextmanager
def _asyncio_reports() -> Iterator[list[dict[str, Any]]]:
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    try:
        yield reported
    finally:
        loop.set_exception_handler(None)


async def _ended(attachment: Attachment) -> None:
    async def poll() -> None:
        while attachment.running:  # noqa: ASYNC110 - polling the public flag is the test
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), _WAIT)
    await asyncio.sleep(0)  # the task's done callbacks run one loop turn later


@pytest.mark.parametrize("failing_handler", [False, True], ids=["source", "processing"])
async def test_dropped_failed_run_is_reported_only_by_the_library(failing_handler: bool) -> None:
    with _asyncio_reports() as reported, _processor_log() as logged:
        attachment = _processor(failing_handler=failing_handler).run_in_background(
            _failing_source()
        )
        await _ended(attachment)
        del attachment
        gc.collect()
    assert [c.get("message") for c in reported] == []  # asyncio: "never retrieved" before
    expected = HandlerBroke if failing_handler else SourceBroke
    assert len(logged) == 1
    level, message, error = logged[0]
    assert level == logging.ERROR
    assert message.startswith("processor stopped (background run): ")
    assert error is expected


@pytest.mark.parametrize("failing_handler", [False, True], ids=["source", "processing"])
async def test_wait_still_raises_the_logged_failure(
    failing_handler: bool, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="pepperpy.event.processor"):
        attachment = _processor(failing_handler=failing_handler).run_in_background(
            _failing_source()
        )
        await _ended(attachment)  # logged and marked retrieved before wait() is called
        expected = HandlerBroke if failing_handler else SourceBroke
        with pytest.raises(expected):
            await asyncio.wait_for(attachment.wait(), _WAIT)
        with pytest.raises(expected):  # and again, as awaiting a failed Task does
            await asyncio.wait_for(attachment.wait(), _WAIT)


async def test_a_failure_the_library_did_not_log_is_still_reported_by_asyncio() -> None:
    class Source:
        def __aiter__(self) -> Source:
            return self

        async def __anext__(self) -> Event:
            raise SourceBroke("source broke")

        async def aclose(self) -> None:
            raise RuntimeError("aclose broke")  # replaces the logged failure, unlogged

    with _asyncio_reports() as reported, _processor_log() as logged:
        attachment = _processor(failing_handler=False).run_in_background(Source())
        await _ended(attachment)
        del attachment
        gc.collect()
    assert [error for _, _, error in logged] == [SourceBroke]
    assert [c.get("message") for c in reported] == ["Task exception was never retrieved"]
    assert isinstance(reported[0]["exception"], RuntimeError)
