"""Idempotency claims held by a delivery whose event loop was closed mid-way.

A thread that stops its loop and closes it without cancelling its tasks leaves its
deliveries unfinished for good. Their claims are abandoned, as a crashed holder's lease
is in Redis: the next call with the key sends, instead of waiting for ever.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from pepperpy.event import NotificationSystem
from pepperpy.event.notifications import _idempotency
from pepperpy.event.notifications._idempotency import MemoryIdempotencyStore
from pepperpy.event.notifications.channels.memory import MemoryChannel
from tests.helpers import LoopThread


async def _bury(dead: LoopThread) -> None:
    """Close what the loop left, on a running loop (a delivery's cleanup needs one)."""
    dead.bury()
    await asyncio.sleep(0.01)


class Stuck(MemoryChannel):
    """Never finishes sending a body of ``"stuck"``; sends anything else."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()

    async def send(self, notification: Any) -> None:
        if notification.body == "stuck":
            self.entered.set()
            await asyncio.sleep(3600)
        await super().send(notification)


def _system() -> tuple[NotificationSystem, Stuck]:
    system = NotificationSystem()
    channel = Stuck()
    system.add_channel("stuck", channel)
    return system, channel


async def _notify(system: NotificationSystem, body: str) -> str:
    results = await system.notify(channels=["stuck"], to="x", body=body, idempotency_key="k1")
    return results["stuck"].status


def test_a_claim_left_on_a_closed_loop_is_taken_over_by_the_next_call() -> None:
    system, channel = _system()
    dead = LoopThread()
    dead.submit(_notify(system, "stuck"))
    assert channel.entered.wait(5)
    dead.kill()

    async def later() -> None:
        assert await asyncio.wait_for(_notify(system, "again"), 3) == "sent"
        assert await asyncio.wait_for(_notify(system, "again"), 3) == "duplicate"
        await system.close()

    try:
        asyncio.run(later())
    finally:
        asyncio.run(_bury(dead))
    assert [n.body for n in channel.outbox] == ["again"]


def test_a_call_waiting_when_the_holders_loop_closes_goes_ahead(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_idempotency, "CLOSED_LOOP_CHECK", 0.05, raising=False)
    system, channel = _system()
    dead = LoopThread()
    dead.submit(_notify(system, "stuck"))
    assert channel.entered.wait(5)

    async def main() -> None:
        waiting = asyncio.ensure_future(_notify(system, "again"))
        await asyncio.sleep(0.1)
        assert not waiting.done()  # the claim is held on a live loop: it waits
        await asyncio.to_thread(dead.kill)
        assert await asyncio.wait_for(waiting, 3) == "sent"
        await system.close()

    try:
        asyncio.run(main())
    finally:
        asyncio.run(_bury(dead))
    assert [n.body for n in channel.outbox] == ["again"]


def test_a_late_release_from_another_loop_leaves_the_claim_that_took_over() -> None:
    store = MemoryIdempotencyStore()
    dead = LoopThread()
    assert dead.run(store.claim("k")) == "claimed"
    dead.kill()
    other = LoopThread()  # a loop that outlives the test's: it releases "k" late

    async def main() -> None:
        assert await store.claim("k") == "claimed"  # taken over
        other.run(store.release("k"))  # not its claim: ignored
        assert await store.claim("k") == "busy"
        await store.release("k")  # the holder's own release
        assert await store.claim("k") == "claimed"
        await store.complete("k")
        assert await store.claim("k") == "done"

    try:
        asyncio.run(main())
    finally:
        other.kill()


@pytest.mark.parametrize("finish", ["complete", "release"])
def test_a_claim_is_finished_across_threads_and_its_waiters_woken(finish: str) -> None:
    store = MemoryIdempotencyStore()
    holder = LoopThread()
    assert holder.run(store.claim("k")) == "claimed"

    async def main() -> str:
        waiting = asyncio.ensure_future(store.wait("k"))
        await asyncio.sleep(0.02)
        assert not waiting.done()
        await asyncio.to_thread(holder.run, getattr(store, finish)("k"))
        await asyncio.wait_for(waiting, 0.5)  # woken on this loop, not by a timer
        return await store.claim("k")

    try:
        assert asyncio.run(main()) == ("done" if finish == "complete" else "claimed")
    finally:
        holder.kill()
