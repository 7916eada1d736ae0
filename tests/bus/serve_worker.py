"""A consumer service in its own process, for tests/bus/test_serve.py.

Usage: ``python serve_worker.py URL NAMESPACE GATE``

Subscribes to ``orders.*`` in group ``billing`` and runs ``await bus.serve()``. On
``memory://`` it publishes ``orders.placed`` ``{"n": 1}`` to itself; on Redis (namespace
``NAMESPACE``) the test publishes. The handler prints ``handling N``, waits until the
file ``GATE`` exists (so the test can signal the process while it is in flight), then
prints ``finished N``. serve()'s log lines go to stdout too; the process prints
``exited`` when serve() returned.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys

from pepperpy.event import Event, EventBus, RetryPolicy


async def main(url: str, namespace: str, gate: str) -> None:
    if url == "memory://":
        bus = EventBus(retry_policy=RetryPolicy.NONE)
    else:
        from pepperpy.event.transports.redis import RedisTransport

        transport = RedisTransport(url, namespace=namespace, lease_ttl=3.0)
        bus = EventBus(transport=transport, retry_policy=RetryPolicy.NONE)

    @bus.subscribe("orders.*", group="billing")
    async def bill(event: Event) -> None:
        print(f"handling {event.data['n']}", flush=True)
        while not os.path.exists(gate):
            await asyncio.sleep(0.01)
        print(f"finished {event.data['n']}", flush=True)

    published = None
    if url == "memory://":  # publish returns once the handler ran: in a task of its own
        published = asyncio.get_running_loop().create_task(bus.publish("orders.placed", {"n": 1}))
    await bus.serve()
    if published is not None:
        await published
    print("exited", flush=True)


if __name__ == "__main__":
    # Ctrl-C as in a terminal, even when started where SIGINT is ignored (a background
    # job of a non-interactive shell): serve() leaves an ignored signal ignored
    signal.signal(signal.SIGINT, signal.default_int_handler)
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
    asyncio.run(main(*sys.argv[1:4]))
