"""What ``Projection.follow()`` tells apart and says (outages to ride out, another
follower's commit, where the projection stands), how it takes live events in batches,
and how ``wait_until`` waits for a position."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterable, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeGuard, cast

from ._errors import (
    ClosedError,
    ConcurrencyError,
    EncryptionError,
    StoreError,
    StreamDeletedError,
)
from ._event import Event
from .store._reader import Outage
from .store._waiters import LoopWaiters

if TYPE_CHECKING:
    from .store import EventStore
    from .store._reader import StoreSubscription

logger = logging.getLogger("pepperpy.event.replay")

__all__ = [
    "Log",
    "Stops",
    "is_outage",
    "reached",
    "recovered",
    "ride_out",
    "standing",
    "taken_over",
    "waiting",
]


def is_outage(error: BaseException) -> TypeGuard[StoreError]:
    """True for a store failure that trying again may cure (a lost connection, a server
    restarting), not for a verdict that stays: another runner's commit, a deleted stream,
    a key that is missing or wrong."""
    return isinstance(error, StoreError) and not isinstance(
        error, ConcurrencyError | StreamDeletedError | EncryptionError
    )


def taken_over(name: str, conflict: ConcurrencyError) -> str:
    """What a follower that lost the compare-and-set of its save to another says."""
    if conflict.actual is not None and conflict.actual == conflict.expected:
        saved = (
            f"its state was saved again since this follower loaded it (global position "
            f"{conflict.actual} on disk, as expected, but by another save: it was rebuilt, "
            "say, by another process or Projection object of that name)"
        )
    else:
        saved = (
            f"another follower of this projection saved its state first (global position "
            f"{conflict.actual} on disk, {conflict.expected} expected): another process is "
            "running it, or another Projection object of that name"
        )
    return (
        f"projection {name!r}: {saved}; state and position are now as that one saved "
        "them. Run one follower per projection: one replica, or a leader lock that one "
        "process holds at a time"
    )


def standing(loaded: bool, position: int | None) -> str:
    """Where a projection stands, for an error or log line: ``loaded`` says whether
    ``position`` is the one on disk (else a save whose outcome is unknown came after)."""
    if loaded:
        return "before its first event" if position is None else f"at global position {position}"
    if position is None:
        return "(its saved position could not be loaded)"
    return f"at global position {position}, or later if its last save went through"


async def waiting(reader: AsyncIterable[Event], most: int) -> AsyncGenerator[list[Event], None]:
    """The events of ``reader`` in lists: each the next event, with those that follow it
    at once (already read, so a step of the loop gives them), up to ``most``.

    One read is always under way, as a task of its own, and is looked at after the loop
    has run a step: a read served from what the reader holds is done by then, one that
    must wait for the database or for news is not, and the list so far is given out.
    """
    iterator = aiter(reader)
    reading: asyncio.Future[Event] = asyncio.ensure_future(anext(iterator))
    try:
        while True:
            try:
                batch = [await reading]
            except StopAsyncIteration:
                return
            reading = asyncio.ensure_future(anext(iterator))
            while len(batch) < most:
                await asyncio.sleep(0)
                if not reading.done() or reading.exception() is not None:
                    break  # waiting (or ended, or failed): given out with the next batch
                batch.append(reading.result())
                reading = asyncio.ensure_future(anext(iterator))
            yield batch
    finally:
        reading.cancel()
        await asyncio.gather(reading, return_exceptions=True)


@dataclass(frozen=True, slots=True)
class Log:
    """What ``reached`` asks of the event store: whether it (or the projection: the
    words why, None while neither is) is closed, its newest
    global position, and whether nothing will ever be appended to it (an SQLite store
    opened with ``?immutable=1``). ``what`` names the projection in messages."""

    what: str
    closed: Callable[[], str | None]
    head: Callable[[], Awaitable[int | None]]
    frozen: bool = False
    #: how the projection's follow() in this process ended with an error (None: it did not)
    failed: Callable[[], str | None] = lambda: None


async def reached(
    position: int,
    moved: LoopWaiters,
    at: Callable[[], int | None],
    saved: Callable[[], Awaitable[int | None]],
    log: Log,
    through: Callable[[int, int | None], Awaitable[bool]] | None = None,
) -> int:
    """Wait until ``at()`` (woken through ``moved``) or ``saved()`` (polled, 10 ms
    doubling to 0.5 s) is at least ``position``; return it.

    ``through(position, known)``, if given, says whether nothing the projection reads
    lies after ``known`` (the further of the two, None if neither has a position) up to
    ``position``: a projection with filters only moves with the events it reads, so an
    event it does not read may hold ``position``. When it says so, ``position`` is
    returned.

    A position that can never be reached raises: the store or the projection closed
    (before or during the wait: ``ClosedError``), or one past the head of a store nothing appends to
    (``ValueError``). One past the head of an open store is waited for (another writer
    may append it), and the head is read again at each poll until the position is in
    the log; a wait cancelled (``asyncio.timeout``) while it is not gets a note saying
    so, which the ``TimeoutError`` shows as its cause. A head that cannot be read (an
    outage of the event store alone: the state store may be elsewhere), nor a
    ``through`` that cannot tell, is a reason to stop waiting."""
    pause = 0.01
    head: int | None = None
    written = False  # whether ``position`` was in the log at a look
    past = False  # whether the last look at the head found ``position`` past it
    try:
        while True:
            woken = moved.register()  # before looking: no wake-up falls between the two
            here = at()
            if here is not None and here >= position:
                return here
            there = await saved()
            if there is not None and there >= position:
                return there
            known = max((p for p in (here, there) if p is not None), default=None)
            closed = log.closed()
            if closed is not None:
                raise ClosedError(
                    f"{log.what} cannot reach global position {position}: {closed} (it is "
                    f"{standing(True, known)})"
                )
            if not written:
                try:
                    head = await log.head()
                except StoreError:  # an outage: the position may be reached all the same
                    past = False
                else:
                    written = head is not None and head >= position
                    past = not written
                    if past and log.frozen:
                        raise ValueError(
                            f"{log.what} cannot reach global position {position}: it is "
                            f"past the store's newest event ({newest(head)}), and nothing is "
                            "appended to this store (it is open with immutable=1); is it "
                            "another store's position?"
                        )
            if through is not None and await _through(through, position, known):
                return position
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(pause):
                    await woken.wait()
            pause = min(pause * 2, 0.5)
    except asyncio.CancelledError as cancelled:
        failure = log.failed()
        if failure is not None:
            cancelled.add_note(
                f"{log.what} did not reach global position {position}: its follow() in "
                f"this process ended with {failure}; nothing here moves it on (a process "
                "serving it elsewhere may)"
            )
        if past:
            cancelled.add_note(
                f"{log.what} was waiting for global position {position}, which is past "
                f"the store's newest event ({newest(head)}): an append's global_position "
                "is in the log once append() returns, so it was never written here; is it "
                "another store's position, or a stream position (next_expected_version)?"
            )
        raise


async def _through(
    through: Callable[[int, int | None], Awaitable[bool]], position: int, known: int | None
) -> bool:
    """``through(position, known)``, False while the event store cannot be reached."""
    try:
        return await through(position, known)
    except StoreError:  # an outage: the saved position may still get there
        return False


def newest(head: int | None) -> str:
    """The store's head in words."""
    return "the store is empty" if head is None else f"global position {head}"


class Stops:
    """Ends the backoff of a projection's followers at once: woken by the projection's
    ``close()`` (:meth:`wake`) and, as the store's subscriptions are, by the store's
    ``close()``, from any thread (it was a plain sleep of up to 1 s, which ``close()``
    waited out)."""

    __slots__ = ("__weakref__", "_waiters")

    def __init__(self, store: EventStore) -> None:
        self._waiters = LoopWaiters()
        # the store wakes what it holds here (weakly) as it closes: _wake() is all it calls
        store._subscriptions.add(cast("StoreSubscription", self))

    def wake(self) -> None:
        """End every pause under way (the projection was closed)."""
        self._waiters.wake()

    _wake = wake  # the store's close() calls it, as it calls a subscription's

    async def pause(self, seconds: float, stopped: Callable[[], bool]) -> None:
        """Wait ``seconds``, or less: until :meth:`wake`, or the store's close, or at
        once if ``stopped()`` (checked after registering, so no wake-up is missed)."""
        woken = self._waiters.register()
        if stopped():
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await woken.wait()


async def ride_out(
    outage: Outage,
    error: StoreError,
    name: str,
    where: str,
    pause: Callable[[float], Awaitable[None]],
) -> None:
    """A step of projection ``name``'s ``follow()`` failed with ``error`` in an outage:
    ``pause`` the backoff (logging a warning as the outage begins), or raise once
    ``retry_for`` has passed since it began, saying ``where`` the projection stands."""
    seconds = outage.failed(time.monotonic())
    if seconds is None:
        elapsed, tries = outage.end() or (0.0, "")
        raise StoreError(
            f"projection {name!r} {where}: the store could not be reached for "
            f"{elapsed:.1f} s ({tries}, retry_for={outage.retry_for:g}): {error}; "
            "state and position are as last saved, nothing was applied twice or "
            "skipped: call follow() again to resume from there"
        ) from error
    if outage.failures == 1:
        logger.warning("projection %r %s: %s; trying again %s", name, where, error, outage.plan)
    await pause(seconds)


def recovered(outage: Outage, name: str, position: int | None) -> None:
    """A step of projection ``name``'s ``follow()`` worked: an outage under way is over."""
    ended = outage.end()
    if ended is not None:
        logger.info(
            "projection %r: the store can be reached again, after %.1f s and %s; "
            "following from global position %s",
            name,
            *ended,
            position,
        )
