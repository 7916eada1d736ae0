"""A checkpointed store attachment that fails, with nobody waiting on it, is reported
once, by the library's ERROR ("processor stopped: checkpoint ..."): asyncio reported the
same failure again when the attachment was dropped ("Task exception was never
retrieved"), as it did for run_in_background (see
test_background_run_failure_reported_once.py). ``wait()`` still raises it."""

from __future__ import annotations

import asyncio
import gc
import logging

import pytest

from pepperpy.event import Event, EventProcessor, EventStore
from tests.processing.test_background_run_failure_reported_once import (
    _asyncio_reports,
    _ended,
    _processor_log,
)

_WAIT = 10


class HandlerBroke(Exception):
    pass


def _failing(processor: EventProcessor) -> None:
    @processor.handle("job.*")
    def handle(event: Event) -> None:
        raise HandlerBroke(f"handler broke on {event.type}")


async def test_a_dropped_failed_attachment_is_reported_only_by_the_library() -> None:
    async with EventStore("memory://") as store:
        await store.append("jobs", Event("job.first", {}))
        processor = EventProcessor()
        _failing(processor)
        with _asyncio_reports() as reported, _processor_log() as logged:
            attachment = processor.attach(store, checkpoint="jobs")
            await _ended(attachment)
            del attachment
            gc.collect()
    assert [c.get("message") for c in reported] == []  # asyncio: "never retrieved" before
    assert len(logged) == 1
    level, message, error = logged[0]
    assert (level, error) == (logging.ERROR, HandlerBroke)
    assert message == "processor stopped: checkpoint 'jobs', store attachment"


async def test_wait_still_raises_the_failure() -> None:
    async with EventStore("memory://") as store:
        await store.append("jobs", Event("job.first", {}))
        processor = EventProcessor()
        _failing(processor)
        with _processor_log():
            attachment = processor.attach(store, checkpoint="jobs")
            await _ended(attachment)  # logged and marked retrieved before wait()
            for _ in range(2):  # as awaiting a failed Task does, every time
                with pytest.raises(HandlerBroke):
                    await asyncio.wait_for(attachment.wait(), _WAIT)
