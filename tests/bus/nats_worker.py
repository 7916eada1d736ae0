"""A worker process for the NATS multi-process tests.

``python -m tests.bus.nats_worker URL STREAM PREFIX PATTERN GROUP OUT [--hang] [...]``
joins ``GROUP`` on ``PATTERN`` (``-`` for no group) and appends one line per handled
event to ``OUT`` (``<n> <pid>``, flushed before the handler returns, i.e. before the
ack). It prints ``ready`` once subscribed and stops gracefully on SIGTERM. With
``--hang`` the handler records the event and then blocks forever, so a test can kill
the process mid-handler.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys

from pepperpy.event import Event, EventBus, RetryPolicy
from pepperpy.event.transports.nats import NatsTransport


async def run(args: argparse.Namespace) -> None:
    transport = NatsTransport(
        args.url,
        stream=args.stream,
        prefix=args.prefix,
        ack_wait=args.ack_wait,
        max_deliver=args.max_deliver,
        inactive_threshold=args.inactive_threshold,
    )
    bus = EventBus(transport=transport, retry_policy=RetryPolicy.NONE)
    out = open(args.out, "a", buffering=1)  # closed after the bus
    pid = os.getpid()

    @bus.subscribe(args.pattern, group=None if args.group == "-" else args.group)
    async def handle(event: Event) -> None:
        out.write(f"{event.data['n']} {pid}\n")
        out.flush()
        if args.hang:
            await asyncio.Event().wait()

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await bus.start()
    print("ready", flush=True)
    await stop.wait()
    await bus.close()
    out.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("url", "stream", "prefix", "pattern", "group", "out"):
        parser.add_argument(name)
    parser.add_argument("--hang", action="store_true")
    parser.add_argument("--ack-wait", type=float, default=2.0)
    parser.add_argument("--max-deliver", type=int, default=5)
    parser.add_argument("--inactive-threshold", type=float, default=30.0)
    asyncio.run(run(parser.parse_args()))
    sys.exit(0)


if __name__ == "__main__":
    main()
