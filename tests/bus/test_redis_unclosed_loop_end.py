"""A Redis bus left started when ``asyncio.run()`` ends: asyncio.run cancels the
transport's tasks once, waits for them, and they must end (docs/transport-redis.md,
"Closing": "they end at once").

A group's partition workers did not: a worker cancelled from outside while its
partition was still assigned handed it to ``_worker_done``, which found the partition
still ours and started a new worker. asyncio.run (its one cancel-and-wait done) closed
the loop with those workers pending: "Task was destroyed but it is pending!" on stderr,
then, as they were garbage-collected, "unexpected error while consuming stream ..."
tracebacks (``RuntimeError: no running event loop``), their reader connections open
until then.
"""

from __future__ import annotations

import asyncio
import os
import sys

import pytest

pytestmark = pytest.mark.redis

_UNCLOSED_GROUP = """
import asyncio, sys
from pepperpy.event import EventBus

async def main():
    bus = EventBus(transport=sys.argv[1])
    got = []

    @bus.subscribe("loops.*", group="g")
    async def handle(event):
        got.append(event.data["n"])

    await bus.start()
    for n in range(4):
        await bus.publish("loops.ran", {"n": n}, key=str(n))
    while len(got) < 4:
        await asyncio.sleep(0.02)
    # no bus.close(): the script's loop ends first, and asyncio.run cancels what is left

asyncio.run(main())
print("ended")
"""


async def test_a_started_group_ends_with_the_one_cancel_asyncio_run_sends(
    redis_url: str, namespace: str
) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _UNCLOSED_GROUP,
        f"{redis_url}?namespace={namespace}&partitions=2",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        async with asyncio.timeout(60):
            out, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()
    assert out.decode().split() == ["ended"]
    assert "Task was destroyed but it is pending" not in err.decode()
    assert "unexpected error while consuming" not in err.decode()
