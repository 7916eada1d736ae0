"""Channels without leaks: the existence probe, and what a closed channel left behind.

aio-pika watches a channel's connection through aiormq's ``Connection.closing``, which
hands out a new observer future each time, registered on the connection until it is done
or cancelled. Opening a channel registers one (with the channel's close callback) and
closing it another (an attempt to unregister the first, which cannot reach it); neither
ever ends while the connection lives. So every channel opened and closed leaves two
callbacks, and what they hold (the channel's callbacks, its queues and exchanges), on
the connection: about 5 KB per ungrouped subscription and 28 KB per group joined and
left, without bound on a bus whose subscriptions come and go.

:func:`release_spent_observers` cancels the observers nobody can use any more, which is
what unregisters them; :class:`Probe` asks whether queues exist (and how many consumers
they have) on one long-lived plain aiormq channel instead of a channel each.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aio_pika.abc import AbstractRobustConnection
    from aiormq.abc import AbstractChannel as RawChannel

__all__ = ["Probe", "release_spent_observers"]

#: the callbacks aiormq's ``Base.closing`` puts on its connection and on each observer
_ON_CLOSE = "closing.<locals>.on_close"
_ON_DONE = "closing.<locals>.on_done"


def release_spent_observers(connection: AbstractRobustConnection | None) -> int:
    """Unregister the ``closing`` observers of closed channels from ``connection``.

    An observer is spent when all it would still notify are close callbacks that already
    ran (their channel closed) or nothing at all. Cancelling it removes its callback from
    the connection (aiormq's own way to stop an observer) and notifies nobody: a close
    callback runs once. Live channels' observers are left alone. Returns how many were
    released; 0 when the connection is away or aiormq's internals are not as expected.
    """
    underlay = getattr(getattr(connection, "transport", None), "connection", None)
    closing = getattr(underlay, "_closing", None)
    if not isinstance(closing, asyncio.Future) or closing.done():
        return 0
    released = 0
    for callback, _ in list(closing._callbacks or ()):
        observer = _observer(callback)
        if observer is not None and not observer.done() and _spent(observer):
            observer.cancel()
            released += 1
    return released


def _observer(callback: Any) -> asyncio.Future[Any] | None:
    """The observer future behind one of ``Base.closing``'s callbacks, if it is one."""
    if not getattr(callback, "__qualname__", "").endswith(_ON_CLOSE):
        return None
    cells = [cell.cell_contents for cell in getattr(callback, "__closure__", None) or ()]
    futures = [value for value in cells if isinstance(value, asyncio.Future)]
    return futures[0] if len(futures) == 1 else None


def _spent(observer: asyncio.Future[Any]) -> bool:
    from aio_pika.tools import OneShotCallback

    for callback, _ in observer._callbacks or ():
        if getattr(callback, "__qualname__", "").endswith(_ON_DONE):
            continue  # the observer's own unregistering
        if isinstance(callback, OneShotCallback) and callback.finished.is_set():
            continue  # a channel's close callback, run already
        return False  # somebody waits on it, or a live channel's callback
    return True


class Probe:
    """Passive queue declares on one plain aiormq channel, kept open between questions.

    A passive declare of a missing queue makes the broker close the channel (AMQP's 404),
    so the next question opens another one; so does a reconnect. Questions go one at a
    time: one of them closing the channel must not fail the others.
    """

    def __init__(self) -> None:
        self._channel: RawChannel | None = None
        self._lock = asyncio.Lock()

    async def exists(self, connection: AbstractRobustConnection, queue: str) -> bool:
        """True when ``queue`` exists on the broker (asked, never from a cache)."""
        return await self.consumers(connection, queue) is not None

    async def consumers(self, connection: AbstractRobustConnection, queue: str) -> int | None:
        """How many consumers ``queue`` has on the broker; None when it does not exist.

        Asked here rather than on a channel that matters: the 404 closes only this one.
        A robust channel closed so while its connection restores it fails the restore,
        and aio-pika then drops the whole connection and reconnects (see Group).
        """
        from aiormq.exceptions import ChannelNotFoundEntity

        async with self._lock:
            channel = await self._open(connection)
            try:
                answer = await channel.queue_declare(queue, passive=True)
            except ChannelNotFoundEntity:
                self._channel = None  # the broker closed it
                return None
            return int(answer.consumer_count or 0)

    async def take(self, connection: AbstractRobustConnection, queue: str) -> bool:
        """Delete ``queue`` if it exists; True if it did (one caller at a time takes it)."""
        from aiormq.exceptions import ChannelNotFoundEntity

        async with self._lock:
            channel = await self._open(connection)
            try:
                await channel.queue_declare(queue, passive=True)
            except ChannelNotFoundEntity:
                self._channel = None  # the broker closed it
                return False
            await channel.queue_delete(queue)
            return True

    async def declare(
        self, connection: AbstractRobustConnection, queue: str, arguments: dict[str, Any]
    ) -> str | None:
        """Declare durable ``queue`` with ``arguments``; None when it was made or exists
        with them, else the broker's reason (it exists with others: PRECONDITION_FAILED,
        which closes only this channel)."""
        from aiormq.exceptions import ChannelPreconditionFailed

        async with self._lock:
            channel = await self._open(connection)
            try:
                await channel.queue_declare(queue, durable=True, arguments=arguments)
            except ChannelPreconditionFailed as exc:
                self._channel = None  # the broker closed it
                return str(exc.args[0]) if exc.args else repr(exc)
            return None

    async def _open(self, connection: AbstractRobustConnection) -> RawChannel:
        transport = connection.transport
        if transport is None:  # away, reconnecting: never wait for it here
            from aiormq.exceptions import ChannelInvalidStateError

            raise ChannelInvalidStateError("the connection to RabbitMQ is away (reconnecting)")
        underlay = transport.connection
        channel = self._channel
        if channel is None or channel.is_closed or channel.connection is not underlay:
            self._channel = None
            channel = self._channel = await underlay.channel(publisher_confirms=False)
        return channel

    def forget(self) -> None:
        """Drop the channel (its connection is closing or its loop ended)."""
        self._channel = None
