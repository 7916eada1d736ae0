"""A dead letter the manager keeps does not keep what the failed handler had in hand.

``EventManager.dead_letters`` keeps the latest 1,000 letters. Each held its exception,
the exception its traceback, and the traceback every frame with its variables: a handler
holding a 1 MB download when it failed made the kept letters hold 1 GB, and an object
whose bound method failed stayed alive as long as its letter.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import traceback
import weakref
from typing import Any

import pytest

from pepperpy.event import DeadLetter, Event, EventManager, RetryPolicy


class Download:
    """What a handler has in hand (a file, a page of rows)."""


def _manager(held: list[Any], policy: RetryPolicy = RetryPolicy.NONE) -> EventManager:
    manager = EventManager(retry_policy=policy)

    @manager.on("file.*")
    async def fetch(event: Event) -> None:
        download = Download()
        held.append(weakref.ref(download))
        try:
            raise ConnectionError("reset by peer")
        except ConnectionError as exc:
            raise ValueError(f"could not fetch {download!r}") from exc

    return manager


@pytest.mark.parametrize("policy", [RetryPolicy.NONE, RetryPolicy.fixed(2, base_delay=0)])
async def test_kept_letters_hold_no_handler_variables(
    policy: RetryPolicy, caplog: pytest.LogCaptureFixture
) -> None:
    held: list[Any] = []
    manager = _manager(held, policy)
    seen: list[str] = []

    @manager.on_error
    def record(letter: DeadLetter) -> None:  # callbacks still see the whole exception
        seen.append("".join(traceback.format_exception(letter.exception)))

    with caplog.at_level(logging.ERROR, logger="pepperpy.event"):
        await manager.emit("file.fetched")
    gc.collect()
    assert len(manager.dead_letters) == 1 and held
    assert [ref() for ref in held] == [None] * len(held)
    assert len(seen) == 1 and "ConnectionError: reset by peer" in seen[0]
    assert any(record.exc_info for record in caplog.records)
    letter = manager.dead_letters[0]
    lines = traceback.format_exception(letter.exception)  # the lines stay
    assert any("in fetch" in line for line in lines)
    assert "could not fetch" in str(letter.exception)


async def test_several_handlers_failing_hold_nothing() -> None:
    held: list[Any] = []
    manager = _manager(held)

    @manager.on("file.*")
    def index(event: Event) -> None:  # a sync one beside: the several-handlers path
        rows = Download()
        held.append(weakref.ref(rows))
        raise KeyError("no index")

    await manager.emit("file.fetched")
    for _ in range(3):
        await asyncio.sleep(0)
    gc.collect()
    assert len(manager.dead_letters) == 2 and len(held) == 2
    assert [ref() for ref in held] == [None, None]


async def test_an_emit_with_several_failing_handlers_still_finishes() -> None:
    # the emit that caught a sync handler's error waits, suspended, while the retries
    # (in tasks of their own) dead-letter it: clearing its frame would close it
    manager = EventManager()
    for name in ("a", "b"):

        def fail(event: Event, name: str = name) -> None:
            raise KeyError(name)

        manager.on("job.run", fail)

    @manager.on("job.run")
    async def fail_async(event: Event) -> None:
        raise ValueError("async")

    for _ in range(2):
        event = await manager.emit("job.run")
        assert event.type == "job.run"
    assert len(manager.dead_letters) == 6


async def test_a_live_coroutine_in_the_traceback_keeps_running() -> None:
    # a reader loop keeps the error it caught and handlers raise it again: its frame is
    # in their tracebacks, suspended; freeing the letters must not close it
    loop = asyncio.get_running_loop()
    errors: list[Exception] = []
    reads = 0

    async def reader() -> None:
        nonlocal reads
        while True:
            failed = loop.create_future()
            failed.set_exception(ConnectionError("link down"))
            try:
                await failed
            except ConnectionError as exc:
                errors.append(exc)
            reads += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(reader())
    await asyncio.sleep(0)
    manager = EventManager()

    @manager.on("file.*")
    def send(event: Event) -> None:
        raise errors[-1]

    await manager.emit("file.sent")
    before = reads
    for _ in range(5):
        await asyncio.sleep(0)
    assert not task.done() and reads > before
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
