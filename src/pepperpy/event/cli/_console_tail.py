"""The web console's live tail: ``/api/tail`` as Server-Sent Events.

Each event is sent with ``id: <global position>``, so a browser that reconnects resumes
after the last one it saw (``Last-Event-ID``); heartbeats keep an idle connection open.
A stop of the server ends every tail (:class:`TailResponse`), even one whose client
stopped reading.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from .. import _json
from .._event import Event
from ..store import EventStore, StoreSubscription
from ._console_json import MAX_RESPONSE_BYTES, EventBatches
from ._console_requests import _failure
from ._tail import last_events

__all__ = ["BACKLOG_CHUNK", "HEARTBEAT_SECONDS", "STOP_GRACE_SECONDS", "UNFINISHED", "TailResponse"]

logger = logging.getLogger("pepperpy.event.console")

HEARTBEAT_SECONDS = 15.0
BACKLOG_CHUNK = 64 * 1024  # bytes of a tail's backlog sent in one write
#: how long a tail may take to end once the server stops (its client reading)
STOP_GRACE_SECONDS = 1.0
#: what uvicorn logs (an ERROR) for a response cut short: a stalled tail ended at a stop
UNFINISHED = "ASGI callable returned without completing response."


class TailResponse(StreamingResponse):
    """A live tail's answer, ended when ``stopping`` is set, however its client reads.

    A tail ends by itself at a stop (``_sse`` returns), unless a write is waiting for
    a client that stopped reading (a suspended laptop, a stuck proxy): that write
    waited until uvicorn's graceful timeout (``serve``: 10 s), which then logged the
    tail's cancellation with a traceback. Such a tail is given ``STOP_GRACE_SECONDS``,
    then cut off (uvicorn closes its connection, and logs :data:`UNFINISHED`).
    """

    def __init__(self, content: AsyncIterator[bytes], stopping: asyncio.Event) -> None:
        super().__init__(
            content,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        self._stopping = stopping
        self._content = content

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        streaming = asyncio.ensure_future(super().__call__(scope, receive, send))
        stopped = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({streaming, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if not streaming.done():
                await asyncio.wait({streaming}, timeout=STOP_GRACE_SECONDS)
            if not streaming.done():
                logger.info("console: a live tail's client is not reading; cut off at the stop")
                streaming.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await streaming
                return
            streaming.result()
        finally:
            stopped.cancel()
            if not streaming.done():  # this task was cancelled: so is the response
                streaming.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await streaming
            await _closed(self._content)  # its subscription closed now, not when collected


async def tail_backlog(
    store: EventStore, lines: int, streams: list[str] | None, types: list[str] | None
) -> tuple[list[bytes], int]:
    """The start of a tail without ``from``: the last ``lines`` matching events as SSE
    messages, oldest first, but no more than :data:`MAX_RESPONSE_BYTES` of them (the
    newest that fit, at least one), and the position to follow from.

    Read newest first in batches sized by the largest event seen: the last 1,000 events
    were read whole, and kept until sent, however large (1,000 events of 1 MB: a
    gigabyte per browser opening ``/tail``).
    """
    _, start = await last_events(store, 0, streams, types)  # the head: where to follow
    if lines == 0 or start == 0:
        return [], start

    async def read(cursor: int | None, count: int) -> list[Event]:
        return await store.read_all(
            cursor, backwards=True, streams=streams, types=types, limit=count
        )

    def before(event: Event) -> int | None:
        position = event.global_position or 0
        return position - 1 if position > 0 else None

    batches = EventBatches(read, before, start - 1, lines)
    newest_first: list[bytes] = []
    while events := await batches.next():
        for event in events:
            message = _sse_event(event)
            if newest_first and batches.used + len(message) > MAX_RESPONSE_BYTES:
                newest_first.reverse()
                return newest_first, start
            batches.used += len(message)
            batches.largest = max(batches.largest, len(message))
            newest_first.append(message)
    newest_first.reverse()
    return newest_first, start


async def _sse(
    backlog: list[bytes], live: StoreSubscription, stopping: asyncio.Event
) -> AsyncIterator[bytes]:
    """Server-Sent Events: the backlog, then live events, with heartbeats when idle.

    The stream ends when ``stopping`` is set (the server is shutting down). A
    subscription that fails (its database went away) ends the stream properly with an
    ``event: error`` message and one WARNING in the log; either way the browser's
    ``EventSource`` reconnects with ``Last-Event-ID`` and misses nothing.
    """
    try:
        for chunk in _backlog_chunks(backlog):
            for piece in _pieces(chunk):
                if stopping.is_set():
                    return
                yield piece
                await asyncio.sleep(0)  # a turn for the loop: a client that left is noticed
        async for message in _live(live, stopping):
            for piece in _pieces(message):
                yield piece
    finally:
        await live.aclose()  # also when the client left mid-backlog


async def _live(live: StoreSubscription, stopping: asyncio.Event) -> AsyncIterator[bytes]:
    """The live part of :func:`_sse`: events as they come, heartbeats when idle."""
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


async def _closed(content: AsyncIterator[bytes]) -> None:
    close = getattr(content, "aclose", None)
    if close is not None:
        await close()


def _backlog_chunks(backlog: list[bytes]) -> Iterator[bytes]:
    """The start of a tail in writes of about ``BACKLOG_CHUNK`` bytes: a comment that
    sends the headers at once, then the backlog's messages (``_sse_event``).

    A write per event (up to 1,000 of them), with no turn of the event loop between,
    went on after the client had left, and asyncio logged "socket.send() raised
    exception." on the server's stderr for each client that did.
    """
    chunk, size = [b": pepperpy-event tail\n\n"], 0
    for message in backlog:
        chunk.append(message)
        size += len(message)
        if size >= BACKLOG_CHUNK:
            yield b"".join(chunk)
            chunk, size = [], 0
    if chunk:
        yield b"".join(chunk)


def _pieces(data: bytes) -> Iterator[bytes]:
    """``data`` in writes of at most ``BACKLOG_CHUNK`` bytes.

    A large event was one write: a stop could not cut off a tail whose client stopped
    reading during it (uvicorn held the rest of it, megabytes, for a client that would
    never take them, and the server never stopped). A write of 64 KiB waits no longer
    than the stop's grace, as the backlog's smaller writes did.
    """
    if len(data) <= BACKLOG_CHUNK:
        yield data
        return
    view = memoryview(data)
    for start in range(0, len(data), BACKLOG_CHUNK):
        yield bytes(view[start : start + BACKLOG_CHUNK])


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
