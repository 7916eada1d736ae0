"""One ``DeduplicateMiddleware`` on two event loops (threads): the claim on an id is one step.

It looked the id up, then claimed it: another loop's thread running between the two
(the GIL may switch there) claimed it too, and both copies ran; a duplicate that had
joined the overwritten claim was never told the outcome and waited for ever. The
interleaving is made deterministic: the first lookup of the id runs the other loop's
copy to its end before answering.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from pepperpy.event import DeduplicateMiddleware, Event, EventProcessor
from tests.helpers import LoopThread


@pytest.fixture
def other() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.end()


class _Interleaving(dict[str, Any]):
    """``_running``: its first ``get`` of an id, in the test's thread, runs ``between``."""

    def __init__(self) -> None:
        super().__init__()
        self.between: Any = None
        self.thread = threading.get_ident()

    def get(self, key: str, default: Any = None) -> Any:
        between = self.between
        if between is not None and threading.get_ident() == self.thread:
            self.between = None
            between()
        return super().get(key, default)


async def test_a_copy_on_another_loop_between_lookup_and_claim_runs_once(
    other: LoopThread,
) -> None:
    dedupe = DeduplicateMiddleware()
    running = _Interleaving()
    dedupe._running = running
    processor = EventProcessor().use(dedupe)
    runs: list[str] = []
    lock = threading.Lock()

    @processor.handle("job")
    def handler(event: Event) -> None:
        with lock:
            runs.append(threading.current_thread().name)

    event = Event("job")
    # the other loop processes the same event, to its end, while this one is between
    # its lookup of the id and its claim (on the old code: the lookup had answered None)
    running.between = lambda: other.run(processor.process(event))
    await asyncio.wait_for(processor.process(event), 10)
    if running.between is not None:  # claimed at once here: the other copy comes after
        running.between = None
        other.run(processor.process(event))
    assert len(runs) == 1, runs
    assert dedupe.skipped == 1
    assert not dedupe._running
