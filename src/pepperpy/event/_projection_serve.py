"""``Projection.serve()``: run a projection's ``follow()`` as a service until a signal.

What a follower process needs around ``follow()``, as ``EventBus.serve()`` gives a
consumer: wait until SIGINT or SIGTERM (or until the store is closed), then stop
following, log where the projection stopped, and close it. The signals are handled with
the bus's machinery (``loop.add_signal_handler`` for as long as serve() waits; the
handlers in place before are put back when one arrives, so a second signal acts as it
would without serve(); a signal ignored when serve() begins stays ignored).

Stopping cancels ``follow()``. Nothing is lost or applied twice: a commit in flight
finishes first, and what was applied but not committed yet (part of a catch-up batch,
the live events being applied) is thrown away and applied again after a restart, which
resumes from the position on disk.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Iterable
from typing import TYPE_CHECKING

from ._bus_serve import _check_signals, _install, _restore
from ._seconds import check_seconds

if TYPE_CHECKING:
    from ._bus_serve import _Previous
    from ._projection import Projection

__all__ = ["serve"]

logger = logging.getLogger("pepperpy.event.replay")


async def serve(
    projection: Projection, signals: Iterable[signal.Signals | int], retry_for: float | None
) -> None:
    """See :meth:`Projection.serve`."""
    wanted = _check_signals(signals)
    if retry_for is not None:
        retry_for = check_seconds(retry_for, "retry_for", zero=True, error=ValueError)
    if projection._serving:
        raise RuntimeError(f"serve() is already running on projection {projection.name!r}")
    projection._serving = True
    try:
        await _serve(projection, wanted, retry_for)
    finally:
        projection._serving = False
        await projection.close()


async def _serve(
    projection: Projection, wanted: tuple[signal.Signals, ...], retry_for: float | None
) -> None:
    loop = asyncio.get_running_loop()
    stopped: asyncio.Future[str] = loop.create_future()
    previous: list[_Previous] = []
    name = projection.name

    def stop(reason: str) -> None:
        _restore(loop, previous)  # a second signal acts as it would without serve()
        if not stopped.done():
            stopped.set_result(reason)

    try:
        # the bus's words, but what ends a projection's serve() is the store's close()
        until = _install(loop, wanted, stop, previous).replace("close()", "the store is closed")
        bound = "no limit" if retry_for is None else f"{retry_for:g} s"
        logger.info("projection %r serving: until %s; retry_for %s", name, until, bound)
        following = asyncio.ensure_future(projection.follow(retry_for=retry_for))
        try:
            await asyncio.wait((following, stopped), return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            await _stop(following)
            raise
    finally:
        _restore(loop, previous)
    if following.done():
        following.result()  # an error ends serve() with it; None: the store was closed
        reason = "the store was closed"
    else:
        reason = stopped.result()
        await _stop(following)
    position = projection.position
    at = "before its first event" if position is None else f"at global position {position}"
    logger.info("projection %r: %s; stopped %s, where its state is saved", name, reason, at)


async def _stop(following: asyncio.Future[None]) -> None:
    """Cancel ``follow()`` and wait until it has ended (a commit in flight finishes
    first); an error it ended with meanwhile is raised."""
    following.cancel()
    await asyncio.wait((following,))
    if not following.cancelled():
        following.result()
