"""A kept dead letter does not keep what the failed handler had in hand.

Each ``DeadLetter`` in ``DeadLetterMiddleware.dead_letters`` held its exception, the
exception its traceback, and the traceback every frame with its variables: a handler
holding a 1 MB download when it failed made the default 1,000 letters hold 1 GB.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import traceback
import weakref
from typing import Any

import pytest

from pepperpy.event import (
    DeadLetterMiddleware,
    Event,
    EventProcessor,
    RetryMiddleware,
    RetryPolicy,
)


class Download:
    """What a handler has in hand (a file, a page of rows)."""


def _processor(dead: DeadLetterMiddleware, *inner: Any) -> tuple[EventProcessor, list[Any]]:
    held: list[Any] = []
    processor = EventProcessor().use(dead, *inner)

    @processor.handle("file.*")
    async def fetch(event: Event) -> None:
        download = Download()
        held.append(weakref.ref(download))
        try:
            raise ConnectionError("reset by peer")
        except ConnectionError as exc:
            raise ValueError(f"could not fetch {download!r}") from exc

    @processor.handle("file.*")
    async def index(event: Event) -> None:
        rows = Download()
        held.append(weakref.ref(rows))
        raise KeyError("no index")

    return processor, held


async def test_kept_letters_hold_no_handler_variables(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[str] = []
    dead = DeadLetterMiddleware(
        lambda letter: seen.append("".join(traceback.format_exception(letter.exception)))
    )
    processor, held = _processor(dead, RetryMiddleware(RetryPolicy.fixed(2, base_delay=0)))
    with caplog.at_level(logging.ERROR, logger="pepperpy.event.processor"):
        await processor.process(Event("file.fetched", {}))
    for _ in range(3):  # the callbacks of the handlers' finished tasks run
        await asyncio.sleep(0)
    gc.collect()
    assert len(dead.dead_letters) == 2 and held
    assert [ref() for ref in held] == [None] * len(held)
    # the callbacks saw whole tracebacks, and a kept letter's traceback still has its
    # lines: only the frames' variables went
    assert len(seen) == 2 and all(text.startswith("Traceback") for text in seen)
    logged = [record for record in caplog.records if "dead-lettered" in record.getMessage()]
    assert len(logged) == 2 and all(record.exc_info for record in logged)
    for letter in dead.dead_letters:
        lines = traceback.format_exception(letter.exception)
        assert letter.exception.__traceback__ is not None
        assert any(line.lstrip().startswith('File "') for line in lines)


SHARED = ConnectionError("the database is down")  # one instance, raised in two places


async def test_a_task_paused_while_handling_the_same_exception_goes_on() -> None:
    """One exception object raised in two tasks carries both tasks' frames: the one
    still paused in its ``except`` block must be left alone. Clearing its frame (as
    ``traceback.clear_frames`` does) closed its coroutine on Python 3.11 and 3.12, and
    that task never resumed."""
    resumed = asyncio.Event()

    async def reconnect() -> None:
        try:
            raise SHARED
        except ConnectionError:
            await asyncio.sleep(0.1)  # paused here while the handler below fails
            resumed.set()

    other = asyncio.create_task(reconnect())
    await asyncio.sleep(0.01)
    dead = DeadLetterMiddleware()
    processor = EventProcessor().use(dead)

    @processor.handle("order.*")
    async def charge(event: Event) -> None:
        raise SHARED

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(logging.getLogger("pepperpy.event.processor"), "disabled", True)
        await processor.process(Event("order.placed", {}))
    await asyncio.wait_for(other, 5)
    assert resumed.is_set() and len(dead.dead_letters) == 1
