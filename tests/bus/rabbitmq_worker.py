"""A group member in its own process, for the multi-process RabbitMQ tests.

Usage: ``python -m tests.bus.rabbitmq_worker URL EXCHANGE PATTERN GROUP OUTFILE [DIE_ON [LIMIT]]``

Handles events matching PATTERN in GROUP and appends each event's ``data["n"]`` to
OUTFILE (one line per handling, written before the acknowledgement, so a line can repeat
when the broker redelivers). If DIE_ON is given, the process kills itself with SIGKILL in
the middle of handling the event whose ``n`` equals it, before acknowledging it. Prints
``ready`` once subscribed; LIMIT is the transport's ``delivery_limit``; SIGTERM closes
the bus gracefully.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from pepperpy.event import Event, EventBus, RetryPolicy
from pepperpy.event.transports.rabbitmq import RabbitMQTransport


async def main(argv: list[str]) -> None:
    url, exchange, pattern, group, outfile = argv[:5]
    die_on = int(argv[5]) if len(argv) > 5 else None
    limit = int(argv[6]) if len(argv) > 6 else 10
    transport = RabbitMQTransport(
        url, exchange=exchange, rebalance_interval=0.3, prefetch=32, delivery_limit=limit
    )
    bus = EventBus(transport=transport, retry_policy=RetryPolicy.NONE)
    out = open(outfile, "a", buffering=1)  # noqa: SIM115 - lives as long as the process

    @bus.subscribe(pattern, group=group)
    async def work(event: Event) -> None:
        n = event.data["n"]
        if n == die_on:
            out.write(f"dying {n}\n")
            os.kill(os.getpid(), signal.SIGKILL)
        await asyncio.sleep(0.001)  # a little work, so a run spans the SIGKILL
        out.write(f"{n}\n")

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await bus.start()
    print("ready", flush=True)
    await stop.wait()
    await bus.close()
    out.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
