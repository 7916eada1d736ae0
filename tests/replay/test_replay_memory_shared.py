"""A replay's checkpoint over a memory store resumes in a new EventReplay object.

Every EventReplay over a memory event store opened a memory checkpoint store of its own,
so ``checkpoint="name"`` resumed only within that object: a new ``EventReplay(store)``
(per run, per request) replayed everything again. Projections and attachments already
shared one checkpoint store per memory event store; replays now share it too, and
closing one replay does not close it for the others.
"""

from __future__ import annotations

from pepperpy.event import Event, EventReplay, EventStore


async def test_a_new_replay_object_resumes_the_checkpoint() -> None:
    async with EventStore() as store:
        for n in range(5):
            await store.append("orders.1", Event("order.noted", {"n": n}))
        seen: list[int] = []

        def replay() -> EventReplay:
            made = EventReplay(store)

            @made.handle("order.*")
            async def note(event: Event) -> None:
                seen.append(event.data["n"])

            return made

        first = replay()
        report = await first.replay_all(checkpoint="orders")
        assert (report.replayed, seen) == (5, [0, 1, 2, 3, 4])
        await first.close()  # the shared checkpoint store stays open for the others

        await store.append("orders.1", Event("order.noted", {"n": 5}))
        second = replay()
        report = await second.replay_all(checkpoint="orders")
        assert (report.replayed, seen[5:]) == (1, [5])  # the old code: all six again
        assert await second.reset("orders")
        await second.close()

        third = replay()
        assert (await third.replay_all(checkpoint="orders")).replayed == 6
        await third.close()


async def test_replays_of_two_memory_stores_keep_their_own_checkpoints() -> None:
    async with EventStore() as one, EventStore() as two:
        await one.append("a.1", Event("t.x"))
        await two.append("a.1", Event("t.x"))

        async def read(store: EventStore) -> int:  # events the run went through
            report = await EventReplay(store).replay_all(checkpoint="c")
            return report.replayed + report.skipped

        assert (await read(one), await read(two), await read(one)) == (1, 1, 0)
