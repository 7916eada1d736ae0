"""An event's id is the same in a child made by ``os.fork()`` as in its parent.

An id is kept as (time, counter) until first read, and its text made then. Its last 32
bits used to be drawn at that read, so an event handed to a forked child before anyone
read its id (``multiprocessing``'s fork start method passes a Process's arguments that
way) got one id in the child and another in the parent: what the child stored or
logged named an event the parent never saw. Ids made in the child after the fork must
still differ from the parent's.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import pickle
import select
from collections.abc import Callable
from typing import Any

import pytest

from pepperpy.event import Event, EventManager, _ids

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork() is POSIX only"),
    # Python 3.12+ warns about forking a process with threads: forking is the point here
    pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning"),
]

#: seconds a child may take before it counts as hung
CHILD_TIMEOUT = 30.0


def in_child(body: Callable[[], Any]) -> Any:
    """Fork, run ``body`` in the child and return what it returned (never returns into
    pytest in the child; a child still running after CHILD_TIMEOUT is killed)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(read_end)
            try:
                outcome: tuple[str, Any] = ("ok", body())
                code = 0
            except BaseException as exc:
                outcome = ("error", f"{type(exc).__name__}: {exc}")
            os.write(write_end, pickle.dumps(outcome))
        finally:
            os._exit(code)
    os.close(write_end)
    chunks: list[bytes] = []
    try:
        while True:
            ready, _, _ = select.select([read_end], [], [], CHILD_TIMEOUT)
            if not ready:
                os.kill(pid, 9)
                break
            chunk = os.read(read_end, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(read_end)
    os.waitpid(pid, 0)
    assert chunks, "the child sent nothing"
    kind, value = pickle.loads(b"".join(chunks))
    assert kind == "ok", f"in the child: {value}"
    return value


def test_an_event_read_first_in_a_forked_child_has_the_parents_id() -> None:
    events = [Event("order.placed", {"order": n}) for n in range(20)]  # ids not read yet
    in_the_child = in_child(lambda: [event.id for event in events])
    assert in_the_child == [event.id for event in events]


def test_an_event_a_handler_hands_to_a_forked_process_keeps_its_id() -> None:
    context = multiprocessing.get_context("fork")
    seen: list[tuple[str, str]] = []

    async def main() -> None:
        manager = EventManager()

        async def archive(event: Event) -> None:
            queue = context.SimpleQueue()
            process = context.Process(target=_send_id, args=(event, queue))
            process.start()
            try:
                child_id = await asyncio.wait_for(asyncio.to_thread(queue.get), CHILD_TIMEOUT)
            finally:
                await asyncio.to_thread(process.join, CHILD_TIMEOUT)
            seen.append((child_id, event.id))

        manager.on("order.placed", archive)
        await manager.emit("order.placed", {"order": 7})

    asyncio.run(main())
    [(child_id, parent_id)] = seen
    assert child_id == parent_id


def _send_id(event: Event, queue: Any) -> None:
    queue.put(event.id)


def test_ids_made_after_the_fork_do_not_share_the_parents_last_bits() -> None:
    # the same millisecond and counter in parent and child: only the last 32 bits can
    # tell them apart, and they come from each process's own key
    counter = _ids.next_counter() + 1_000
    mine = _ids.format_event_id(1_700_000_000_000, counter)
    theirs = in_child(lambda: _ids.format_event_id(1_700_000_000_000, counter))
    assert theirs[:-8] == mine[:-8]
    assert theirs != mine
    # what was taken before the fork reads alike on both sides
    before = counter - 2_000
    assert in_child(lambda: _ids.format_event_id(5, before)) == _ids.format_event_id(5, before)


def test_an_event_id_is_its_text_whoever_reads_it_first() -> None:
    # two threads reading a new event's id at the same moment used to be able to make
    # two texts (each drew its own last bits); the text is now a function of the event
    event = Event("order.placed")
    twin = Event.__new__(Event)
    twin._id, twin._ts = event._id, event._ts
    assert twin.id == event.id
