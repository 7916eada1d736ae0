"""A run catches up to the end of the log as it began, and returns.

``Projection.run()``, ``EventReplay.replay_all()`` and ``replay_stream()`` read on until
a page of the log came back short, so events appended while they ran (by writers faster
than the handlers, or by the handlers themselves: a process manager reacting to what it
replays) kept them going as long as each page filled up: a run whose handlers append
never returned, and a ``follow()`` never went live. What is appended meanwhile is the
next run's: nothing is skipped, nothing handled twice.
"""

from __future__ import annotations

import asyncio

from pepperpy.event import Event, EventReplay, EventStore, Projection

#: more than a page of the store's reader (500), so that each page comes back full
LINKS = 600


async def seed(store: EventStore) -> None:
    await store.append("chain.1", [Event("chain.link", {"n": n}) for n in range(LINKS)])


async def test_a_projection_run_returns_at_the_end_of_the_log_as_it_began(
    any_store_url: str,
) -> None:
    async with EventStore(any_store_url) as store:
        await seed(store)

        async def link(state: dict[str, int], event: Event) -> None:
            state["n"] = state.get("n", 0) + 1
            await store.append("chain.1", Event("chain.link", {"n": event.data["n"] + LINKS}))

        async with Projection("chain", store, initial=dict) as projection:
            projection.on("chain.link", link)
            async with asyncio.timeout(60):
                report = await projection.run()
            assert (report.replayed, projection.state) == (LINKS, {"n": LINKS})
            assert projection.position == LINKS - 1
            assert await store.head() == 2 * LINKS - 1  # appended meanwhile: the next run's
            async with asyncio.timeout(60):
                report = await projection.run()
            assert (report.replayed, projection.state) == (LINKS, {"n": 2 * LINKS})
            assert projection.position == 2 * LINKS - 1


async def test_a_replay_returns_at_the_end_of_the_log_as_it_began(any_store_url: str) -> None:
    async with EventStore(any_store_url) as store:
        await seed(store)
        seen: list[int] = []

        async def link(event: Event) -> None:
            seen.append(event.data["n"])
            await store.append("chain.1", Event("chain.link", {"n": event.data["n"] + LINKS}))

        async with EventReplay(store) as replay:
            replay.handle("chain.link", link)
            for run in range(2):  # the second has what the first appended, and no more
                seen.clear()
                async with asyncio.timeout(60):
                    report = await replay.replay_all(checkpoint="chain")
                assert seen == list(range(run * LINKS, (run + 1) * LINKS))
                assert (report.replayed, report.last_position) == (LINKS, (run + 1) * LINKS - 1)

            seen.clear()
            async with asyncio.timeout(60):
                report = await replay.replay_stream("chain.1", start_pos=2 * LINKS)
            assert seen == list(range(2 * LINKS, 3 * LINKS))
            assert report.last_position == 3 * LINKS - 1

            seen.clear()  # a time window (replay_all seeks by it) is bounded the same way
            async with asyncio.timeout(60):
                await replay.replay_all(start_time="2000-01-01T00:00:00Z", start_pos=3 * LINKS)
            assert seen == list(range(3 * LINKS, 4 * LINKS))
