"""A ``wait_until`` that times out after the projection's own ``follow()`` failed says
so: the ``TimeoutError``'s cause carries a note naming the follower's error.

The tutorial's pattern (``follow()`` in a task, ``wait_until`` under ``asyncio.timeout``
in a request) used to end with a bare ``TimeoutError`` when a handler had failed: the
follower's ``ReplayError`` surfaced only as asyncio's "Task exception was never
retrieved", once the task was collected.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pepperpy.event import Event, EventStore, Projection, ReplayError


async def test_the_timeout_names_the_followers_error(any_store_url: str) -> None:
    async with EventStore(any_store_url) as store:
        totals = Projection("totals", store, initial=dict)

        @totals.on("account.credited")
        def credited(state: dict[str, Any], event: Event) -> None:
            state[event.stream] = state.get(event.stream, 0) + event.data["amount"]

        follower = asyncio.create_task(totals.follow())
        try:
            await store.append("account.ann", Event("account.credited", {"amount": 1}))
            bad = await store.append("account.ann", Event("account.credited", {"amt": 1}))
            with pytest.raises(ReplayError, match="'amount'"):
                await follower  # the handler's KeyError ends follow()
            with pytest.raises(TimeoutError) as waited:
                async with asyncio.timeout(0.5):
                    await totals.wait_until(bad.global_position)
            notes = getattr(waited.value.__cause__, "__notes__", [])
            assert any(
                "did not reach global position 1" in note
                and "its follow() in this process ended with ReplayError" in note
                and "'amount'" in note
                for note in notes
            ), notes
        finally:
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)
            await totals.close()


async def test_a_follow_started_again_forgets_the_failure(any_store_url: str) -> None:
    async with EventStore(any_store_url) as store:
        totals = Projection("totals", store, initial=dict)
        fail = [True]

        @totals.on("t.x")
        def note(state: dict[str, Any], event: Event) -> None:
            if fail[0]:
                raise RuntimeError("down")

        await store.append("s.1", Event("t.x", {}))
        with pytest.raises(ReplayError):
            await totals.follow()
        fail[0] = False
        follower = asyncio.create_task(totals.follow())
        try:
            late = await store.append("s.1", Event("t.x", {}))
            async with asyncio.timeout(10):
                assert await totals.wait_until(late.global_position) >= 1
            with pytest.raises(TimeoutError) as waited:
                async with asyncio.timeout(0.2):
                    await totals.wait_until(late.global_position + 1)
            notes = getattr(waited.value.__cause__, "__notes__", [])
            assert not any("follow()" in note for note in notes), notes
        finally:
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)
            await totals.close()
