"""``pepperpy-event bench``: how fast is this store, here, for the four basic jobs?

Writes ``events`` events under fresh streams ``bench.<run id>.*``, measures concurrent
single-event appends, batched appends, reading one long stream and replaying it, then
soft-deletes the streams it made. The numbers are for comparing stores and machines; the
peer comparisons live in ``benchmarks/``.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable

from .._event import Event
from .._replay import EventReplay
from ..store import EventStore

__all__ = ["run_bench"]

PAYLOAD = {"user_id": "123", "name": "John", "email": "john@example.com", "age": 42}


async def run_bench(
    store: EventStore, events: int, tasks: int, batch: int, say: Callable[[str], None]
) -> None:
    """Run the four measurements against ``store`` and report each through ``say``.

    ``events`` events are appended one per call by ``tasks`` concurrent tasks (at most
    ``events`` of them), then again in batches of ``batch``.
    """
    prefix = f"bench.{uuid.uuid4().hex[:8]}"
    made: set[str] = set()

    def line(what: str, count: int, seconds: float) -> None:
        rate = count / seconds if seconds > 0 else float("inf")
        say(f"{what}: {count:,} events in {seconds:.3f}s = {rate:,.0f} events/s")

    try:
        await store.append(f"{prefix}.warmup", Event("bench.warmup", {}))
        made.add(f"{prefix}.warmup")

        share, rest = divmod(events, tasks)  # every event once: the first tasks take the rest

        async def writer(number: int) -> None:
            for i in range(share + (number < rest)):
                stream = f"{prefix}.s{(i * tasks + number) % 100}"
                made.add(stream)
                await store.append(stream, Event("bench.single", PAYLOAD))

        began = time.perf_counter()
        await asyncio.gather(*(writer(n) for n in range(tasks)))
        line(f"append, 1 event per call, {tasks} tasks", events, time.perf_counter() - began)

        long_stream = f"{prefix}.long"
        made.add(long_stream)
        began = time.perf_counter()
        for start in range(0, events, batch):
            size = min(batch, events - start)
            await store.append(long_stream, [Event("bench.batched", PAYLOAD) for _ in range(size)])
        line(f"append, {batch}-event batches", events, time.perf_counter() - began)

        began = time.perf_counter()
        read = 0
        async for _ in store.get_stream(long_stream):
            read += 1
        line("read one stream (async for)", read, time.perf_counter() - began)

        replay = EventReplay(store)
        replay.handle("bench.#", lambda event: None)
        report = await replay.replay_stream(long_stream)
        line("replay one stream (EventReplay)", report.replayed, report.duration)
    finally:
        for stream in sorted(made):
            await store.delete_stream(stream)
