"""What a middleware that misuses ``next_handler`` gets: a clear, documented outcome."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest

from pepperpy.event import Event, EventProcessor
from pepperpy.event._processor import NextHandler


def processor_with(step: Any) -> tuple[EventProcessor, list[str]]:
    processor = EventProcessor()
    processor.middleware(step)
    runs: list[str] = []

    @processor.handle("x")
    async def handler(event: Event) -> None:
        runs.append(event.id)

    return processor, runs


async def test_a_sync_middleware_that_drops_what_next_handler_returned_fails_clearly() -> None:
    def forgetful(event: Event, next_handler: NextHandler) -> None:
        next_handler(event)  # missing ``return``: the handlers never run

    processor, runs = processor_with(forgetful)
    with pytest.raises(TypeError, match=r"forgetful .*did not return what it returned"):
        await processor.process(Event("x"))
    assert runs == []
    gc.collect()  # the dropped coroutine was closed: no "never awaited" warning


async def test_a_sync_middleware_that_returns_next_handler_still_runs_the_handlers() -> None:
    def passing(event: Event, next_handler: NextHandler) -> Any:
        return next_handler(event)

    def scheduling(event: Event, next_handler: NextHandler) -> Any:
        return asyncio.ensure_future(next_handler(event))

    def filtering(event: Event, next_handler: NextHandler) -> None:
        return None  # never calls it: the event stops here, as an async one may do

    for step, expected in ((passing, 1), (scheduling, 1), (filtering, 0)):
        processor, runs = processor_with(step)
        await processor.process(Event("x"))
        assert len(runs) == expected, step


async def test_a_sync_middleware_that_calls_next_handler_twice_and_drops_one_fails() -> None:
    def twice(event: Event, next_handler: NextHandler) -> Any:
        next_handler(event)
        return next_handler(event)

    processor, runs = processor_with(twice)
    with pytest.raises(TypeError, match="twice"):
        await processor.process(Event("x"))
    assert len(runs) == 1  # the returned one ran
    gc.collect()


async def test_an_async_middleware_calling_next_handler_twice_runs_a_succeeded_handler_once() -> (
    None
):
    async def twice(event: Event, next_handler: NextHandler) -> int:
        await next_handler(event)
        await next_handler(event)
        return 42  # a return value is ignored

    processor, runs = processor_with(twice)
    await processor.process(Event("x"))
    assert len(runs) == 1  # one process() call runs a handler that succeeded once
