"""The web console's live tail: ``/api/tail`` as Server-Sent Events.

Each event is sent with ``id: <global position>``, so a browser that reconnects resumes
after the last one it saw (``Last-Event-ID``); heartbeats keep an idle connection open.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator

from .. import _json
from .._event import Event
from ..store import StoreSubscription
from ._console_requests import _failure

__all__ = ["BACKLOG_CHUNK", "HEARTBEAT_SECONDS"]

logger = logging.getLogger("pepperpy.event.console")

HEARTBEAT_SECONDS = 15.0
BACKLOG_CHUNK = 64 * 1024  # bytes of a tail's backlog sent in one write


async def _sse(
    backlog: list[Event], live: StoreSubscription, stopping: asyncio.Event
) -> AsyncIterator[bytes]:
    """Server-Sent Events: the backlog, then live events, with heartbeats when idle.

    The stream ends when ``stopping`` is set (the server is shutting down). A
    subscription that fails (its database went away) ends the stream properly with an
    ``event: error`` message and one WARNING in the log; either way the browser's
    ``EventSource`` reconnects with ``Last-Event-ID`` and misses nothing.
    """
    for chunk in _backlog_chunks(backlog):
        yield chunk
        await asyncio.sleep(0)  # a turn for the loop: a client that has left is noticed
    iterator = live.__aiter__()
    pending: asyncio.Task[Event] | None = None
    stopped = asyncio.ensure_future(stopping.wait())
    try:
        while not stopping.is_set():
            if pending is None:
                pending = asyncio.ensure_future(iterator.__anext__())
            await asyncio.wait(
                {pending, stopped}, timeout=HEARTBEAT_SECONDS, return_when=asyncio.FIRST_COMPLETED
            )
            if stopping.is_set():
                return
            if not pending.done():
                yield b": heartbeat\n\n"
                continue
            try:
                event = pending.result()
            except StopAsyncIteration:
                return
            except Exception as exc:
                yield _sse_error(exc)
                return
            finally:
                pending = None
            yield _sse_event(event)
    finally:
        stopped.cancel()
        if pending is not None:
            pending.cancel()
        await live.aclose()


def _backlog_chunks(backlog: list[Event]) -> Iterator[bytes]:
    """The start of a tail in writes of about ``BACKLOG_CHUNK`` bytes: a comment that
    sends the headers at once, then the backlog's events.

    A write per event (up to 1,000 of them), with no turn of the event loop between,
    went on after the client had left, and asyncio logged "socket.send() raised
    exception." on the server's stderr for each client that did.
    """
    chunk, size = [b": pepperpy-event tail\n\n"], 0
    for event in backlog:
        message = _sse_event(event)
        chunk.append(message)
        size += len(message)
        if size >= BACKLOG_CHUNK:
            yield b"".join(chunk)
            chunk, size = [], 0
    if chunk:
        yield b"".join(chunk)


def _sse_error(exc: Exception) -> bytes:
    """The message that ends a live tail whose subscription failed, logged once."""
    status, message = _failure(exc)
    if status == 500:
        logger.error("console: live tail failed", exc_info=exc)
    else:
        logger.warning("console: live tail ended: %s", message)
    return b"event: error\ndata: %s\n\n" % _json.dumps({"error": message})


def _sse_event(event: Event) -> bytes:
    return b"id: %d\nevent: event\ndata: %s\n\n" % (
        event.global_position or 0,
        _json.dumps(event.to_dict()),
    )
