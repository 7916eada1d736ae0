"""A consumer service for tests/bus/test_serve_shutdown.py, in a process of its own.

Usage: ``python serve_shutdown_worker.py URL NAMESPACE SHUTDOWN_TIMEOUT``

Subscribes ``stuck`` to ``orders.*`` in group ``billing`` and runs
``await bus.serve(shutdown_timeout=SHUTDOWN_TIMEOUT)`` (``-``: None). The handler prints
``handling N`` and then waits for ever, printing ``cancelled N`` when it is cancelled.
On ``memory://`` the worker publishes ``orders.placed`` ``{"n": 1}`` to itself; on Redis
(namespace ``NAMESPACE``) the test publishes, or the URL points nowhere and serve() is
still connecting. serve()'s log lines go to stdout; the process prints ``exited`` when
serve() returned (an exception it raises ends the process the default way).
"""

from __future__ import annotations

import asyncio
import logging
import sys

from pepperpy.event import Event, EventBus, RetryPolicy


async def main(url: str, namespace: str, shutdown_timeout: str) -> None:
    if url == "memory://":
        bus = EventBus(retry_policy=RetryPolicy.NONE)
    else:
        from pepperpy.event.transports.redis import RedisTransport

        transport = RedisTransport(url, namespace=namespace, lease_ttl=3.0)
        bus = EventBus(transport=transport, retry_policy=RetryPolicy.NONE)

    @bus.subscribe("orders.*", group="billing")
    async def stuck(event: Event) -> None:
        print(f"handling {event.data['n']}", flush=True)
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            print(f"cancelled {event.data['n']}", flush=True)
            raise

    if url == "memory://":  # publish returns once the handler ran: in a task of its own
        asyncio.get_running_loop().create_task(bus.publish("orders.placed", {"n": 1}))
    timeout = None if shutdown_timeout == "-" else float(shutdown_timeout)
    await bus.serve(shutdown_timeout=timeout)
    print("exited", flush=True)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(levelname)s %(message)s")
    asyncio.run(main(*sys.argv[1:4]))
