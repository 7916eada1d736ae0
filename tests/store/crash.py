"""Crash test: SIGKILL a writer process mid-run; every acknowledged append must survive.

The child appends three-event batches in a loop and prints each batch number once
``append`` returned. After the kill, the parent reopens the store and checks that every
acknowledged batch is complete and that no batch is half-written.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections import Counter
from pathlib import Path

from pepperpy.event import EventStore

BATCH = 3
ACKS_BEFORE_KILL = 40

CHILD = """
import asyncio, sys
from pepperpy.event import EventStore

async def main() -> None:
    store = EventStore(sys.argv[1])
    number = 0
    while True:
        await store.append(
            f"crash.s{number % 4}",
            [{"type": "crash.tick", "data": {"batch": number, "n": n}} for n in range(3)],
        )
        print(number, flush=True)
        number += 1

asyncio.run(main())
"""


async def _acknowledged_before_sigkill(child_source: str, url: str) -> list[int]:
    """Run ``child_source`` as a writer on ``url``, SIGKILL it after
    :data:`ACKS_BEFORE_KILL` acknowledgements and return every batch number it printed."""
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": f"{root / 'src'}{os.pathsep}{root}"}
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        child_source,
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    assert child.stdout is not None
    acknowledged: list[int] = []
    try:
        async with asyncio.timeout(60):
            while len(acknowledged) < ACKS_BEFORE_KILL:
                line = await child.stdout.readline()
                if not line:
                    assert child.stderr is not None
                    error = await child.stderr.read()
                    raise AssertionError(f"writer died early: {error.decode()}")
                acknowledged.append(int(line))
    finally:
        child.send_signal(signal.SIGKILL)
        await child.wait()
    # lines printed between the last read and the kill were acknowledged too
    rest = await child.stdout.read()
    acknowledged.extend(int(line) for line in rest.split())
    assert child.returncode == -signal.SIGKILL
    return acknowledged


async def assert_survives_sigkill(url: str) -> None:
    acknowledged = await _acknowledged_before_sigkill(CHILD, url)

    async with EventStore(url) as store:
        events = await store.read_all()
    per_batch = Counter(event.data["batch"] for event in events)
    assert all(count == BATCH for count in per_batch.values()), per_batch
    missing = set(acknowledged) - set(per_batch)
    assert not missing, f"acknowledged but lost: {sorted(missing)}"
    for event in events:
        assert event.type == "crash.tick"


#: the child for :func:`assert_multi_survives_sigkill`: transfers between four streams
CHILD_MULTI = """
import asyncio, sys
from pepperpy.event import EventStore

async def main() -> None:
    store = EventStore(sys.argv[1])
    number = 0
    while True:
        source, target = f"crash.s{number % 4}", f"crash.s{(number + 1) % 4}"
        await store.append_streams({
            source: [{"type": "crash.debit", "data": {"batch": number, "n": n}} for n in range(3)],
            target: [{"type": "crash.credit", "data": {"batch": number, "n": n}} for n in range(3)],
        })
        print(number, flush=True)
        number += 1

asyncio.run(main())
"""


async def assert_multi_survives_sigkill(url: str) -> None:
    """:func:`assert_survives_sigkill` for ``append_streams``: no call is half-written
    (each has its three events on each of its two streams, consecutive in the log), and
    every acknowledged one is there."""
    acknowledged = await _acknowledged_before_sigkill(CHILD_MULTI, url)

    async with EventStore(url) as store:
        events = await store.read_all()
    calls: dict[int, list[int]] = {}
    for event in events:
        calls.setdefault(event.data["batch"], []).append(event.global_position)
        expected = f"crash.s{(event.data['batch'] + (event.type == 'crash.credit')) % 4}"
        assert event.stream == expected, event
    for number, positions in calls.items():
        assert positions == list(range(positions[0], positions[0] + 2 * BATCH)), number
    missing = set(acknowledged) - set(calls)
    assert not missing, f"acknowledged but lost: {sorted(missing)}"
