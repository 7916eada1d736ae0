"""A store attachment (or ``run_in_background``) stopped from one of its own handlers:
a "shut down" event, or a handler that decides the consumer must stop.

``stop()`` awaited the attachment's task, which was the caller's own: it raised
``RuntimeError: Task cannot await on itself``, so that event failed, the attachment
stopped with the error (``wait()`` raised it) and the checkpoint stayed before the event,
which the next attachment handled again. Now the attachment ends once the event in hand
is done, as a stop from outside ends it, and its checkpoint covers that event.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from pepperpy.event import Attachment, Event, EventProcessor, EventStore

_WAIT = 60.0


def _stopping_processor(seen: list[int], holder: dict[str, Attachment]) -> EventProcessor:
    processor = EventProcessor()

    @processor.handle("order.*")
    async def handle(event: Event) -> None:
        seen.append(event.data["n"])
        if event.data["n"] == 1:
            await holder["attachment"].stop()  # returns: the attachment ends after this

    return processor


async def test_a_handler_stops_its_checkpointed_attachment(tmp_path: Path) -> None:
    seen: list[int] = []
    holder: dict[str, Attachment] = {}
    processor = _stopping_processor(seen, holder)
    async with EventStore(f"sqlite:///{tmp_path / 'events.db'}") as store:
        await store.append("order.1", [Event("order.placed", {"n": n}) for n in range(4)])
        holder["attachment"] = attachment = processor.attach(store, checkpoint="orders")
        await asyncio.wait_for(attachment.wait(), _WAIT)  # ends without an error
        assert seen == [0, 1]
        assert not attachment.running
        assert attachment.processed == 2
        assert attachment.checkpoint_position == 1  # the stopping event is done
        await attachment.stop()  # stopping again is harmless

        seen.clear()
        again = processor.attach(store, checkpoint="orders")
        while len(seen) < 2:  # noqa: ASYNC110 - polling the list is the test
            await asyncio.sleep(0.01)
        await again.stop()
        assert seen == [2, 3]  # nothing handled twice


async def test_a_handler_stops_its_run_in_background() -> None:
    seen: list[int] = []
    holder: dict[str, Attachment] = {}
    processor = _stopping_processor(seen, holder)

    async def events() -> AsyncIterator[Event]:
        for n in range(4):
            yield Event("order.placed", {"n": n})
        await asyncio.Event().wait()

    holder["attachment"] = attachment = processor.run_in_background(events())
    await asyncio.wait_for(attachment.wait(), _WAIT)
    assert seen == [0, 1]


async def test_a_handler_stops_a_plain_store_attachment() -> None:
    seen: list[int] = []
    holder: dict[str, Any] = {}
    processor = _stopping_processor(seen, holder)
    async with EventStore() as store:
        await store.append("order.1", [Event("order.placed", {"n": n}) for n in range(4)])
        holder["attachment"] = attachment = processor.attach(store)
        await asyncio.wait_for(attachment.wait(), _WAIT)
        assert seen == [0, 1]
        assert attachment.last_global_position == 1
