"""A projection follower service in its own process, for tests/replay/test_projection_service.py.

Usage: ``python serve_projection_worker.py STORE_URL HOLD_AT GATE``

Folds ``tally`` (a count and the positions applied, ``batch_size=100``) from the events
of ``acc.*`` and runs ``await projection.serve()``. The handler of the event whose
``data["n"]`` is ``HOLD_AT`` (``-1``: none) prints ``holding N`` and waits until the file
``GATE`` exists, so the test can signal the process in the middle of a catch-up batch.
serve()'s log lines go to stdout; the process prints ``exited`` when serve() returned.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from typing import Any

from pepperpy.event import Event, EventStore, Projection


def tally(store: EventStore) -> Projection:
    projection = Projection(
        "tally", store, initial=lambda: {"count": 0, "applied": []}, streams="acc.*"
    )

    @projection.on("acc.add")
    async def add(state: dict[str, Any], event: Event) -> None:
        state["count"] += 1
        state["applied"].append(event.global_position)

    return projection


async def main(url: str, hold_at: str, gate: str) -> None:
    async with EventStore(url) as store:
        projection = tally(store)

        @projection.on("acc.add")
        async def hold(state: dict[str, Any], event: Event) -> None:
            if event.data["n"] == int(hold_at):
                print(f"holding {event.data['n']}", flush=True)
                while not os.path.exists(gate):
                    await asyncio.sleep(0.01)

        await projection.serve()
    print("exited", flush=True)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
    asyncio.run(main(*sys.argv[1:4]))
