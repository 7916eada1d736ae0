"""A replay checkpoint records the filters (``streams=``, ``types=``) of the replay that
saved it, and a replay with other filters is refused instead of resuming after it.

Resuming ``replay_all(types=["order.*", "refund.*"], checkpoint="mails")`` from a
checkpoint saved by ``replay_all(types="order.*")`` silently passed over every refund
event before the saved position (audit 15): the checkpoint only knew "the global log".
"""

from __future__ import annotations

import pytest

from pepperpy.event import Event, EventReplay, EventStore, ReplayError
from pepperpy.event.security import acting_as
from tests.security.test_replay_checkpoint_scope import _policy


async def _fill(store: EventStore) -> None:
    await store.append(
        "orders.1", [Event("order.placed", {"n": 0}), Event("refund.made", {"n": 1})]
    )
    await store.append("orders.2", Event("order.placed", {"n": 2}))


def _recording(store: EventStore) -> tuple[EventReplay, list[int]]:
    replay = EventReplay(store)
    seen: list[int] = []
    replay.handle("#", lambda e: seen.append(e.data["n"]))
    return replay, seen


async def test_replay_all_with_other_types_is_refused(any_store_url: str) -> None:
    async with EventStore(any_store_url) as store:
        await _fill(store)
        replay, seen = _recording(store)
        async with replay:
            await replay.replay_all(types="order.*", checkpoint="mails")
            assert seen == [0, 2]
            with pytest.raises(ReplayError) as refused:
                await replay.replay_all(types=["order.*", "refund.*"], checkpoint="mails")
            message = str(refused.value)
            assert "types ['order.*']" in message and "types ['order.*', 'refund.*']" in message
            assert "reset" in message
            assert seen == [0, 2]  # nothing handled by the refused run
            # the same filters in another order, or repeated, are the same filters
            await store.append("orders.3", Event("order.placed", {"n": 3}))
            again = await replay.replay_all(types=["order.*", "order.*"], checkpoint="mails")
            assert again.replayed == 1 and seen == [0, 2, 3]
            # reset, and the wider replay starts over with its own filters recorded
            assert await replay.reset("mails") is True
            seen.clear()
            await replay.replay_all(types=["refund.*", "order.*"], checkpoint="mails")
            assert seen == [0, 1, 2, 3]


async def test_other_streams_and_stream_replay_types_are_refused() -> None:
    async with EventStore() as store, EventReplay(store) as replay:
        await _fill(store)
        await replay.replay_all(streams="orders.1", checkpoint="a")
        with pytest.raises(ReplayError, match=r"streams \['orders\.1'\]"):
            await replay.replay_all(streams="orders.#", checkpoint="a")
        await replay.replay_stream("orders.1", types="order.*", checkpoint="s")
        with pytest.raises(ReplayError, match=r"types \['order\.\*'\]"):
            await replay.replay_stream("orders.1", checkpoint="s")


async def test_hash_selects_the_same_as_no_filter() -> None:
    async with EventStore() as store:
        await _fill(store)
        replay, seen = _recording(store)
        async with replay:
            await replay.replay_all(types="#", streams=["#", "orders.1"], checkpoint="all")
            await store.append("orders.3", Event("order.placed", {"n": 3}))
            report = await replay.replay_all(checkpoint="all")
            assert report.replayed == 1 and seen == [0, 1, 2, 3]


async def test_a_checkpoint_saved_before_filters_were_recorded_is_adopted(
    any_store_url: str,
) -> None:
    async with EventStore(any_store_url) as store:
        await _fill(store)
        replay, seen = _recording(store)
        async with replay:
            # what an older version saved: the scope alone, at global position 1
            await replay.checkpoints.save("replay:old", 1, {"scope": "all"}, previous=None)
            report = await replay.replay_all(types="order.*", checkpoint="old")
            assert report.replayed == 1 and seen == [2]
            saved = await replay.checkpoints.load("replay:old")
            assert saved is not None
            assert saved.state == {"scope": "all", "streams": None, "types": ["order.*"]}
            with pytest.raises(ReplayError, match="refund"):
                await replay.replay_all(types="refund.*", checkpoint="old")


async def test_filters_are_told_only_to_who_may_read_them_and_guard_reset() -> None:
    async with EventStore(access=_policy()) as store, EventReplay(store) as replay:
        with acting_as("admin"):
            await store.append("salaries.1", Event("salary.paid", {"n": 0}))
            await store.append("orders.1", Event("order.placed", {"n": 1}))
            await replay.replay_all(streams="salaries.#", checkpoint="nightly")
        with acting_as("svc.orders"):
            with pytest.raises(ReplayError) as refused:
                await replay.replay_all(streams="orders.#", checkpoint="nightly")
            message = str(refused.value)
            assert "salaries" not in message and "withheld" in message
            # its own replay of the streams it may read can be reset by it (it needed
            # read on "#" before the streams were recorded)
            await replay.replay_all(streams="orders.#", checkpoint="mine")
            assert await replay.reset("mine") is True
        with acting_as("admin"), pytest.raises(ReplayError, match=r"salaries\.#"):
            await replay.replay_all(streams="orders.#", checkpoint="nightly")
