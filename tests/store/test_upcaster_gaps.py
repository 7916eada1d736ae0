"""A chain of store upcasters with a gap (from versions 1 and 3, none from 2) stopped
silently at the gap: readers were handed version-2 events, a version no code of the
current release expects, among version-4 ones, on every read path. Reading such an
event now fails, naming it and the missing version; a complete chain reads as before."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from pepperpy.event import ConfigurationError, Event, EventStore, StoreError
from tests.helpers import store_urls


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[EventStore]:
    async for url in store_urls(request, tmp_path, "upgaps"):
        async with EventStore(url) as opened:
            yield opened


def _add(key: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda data: {**data, key: True}


@pytest.mark.parametrize("stored", [1, 2])
async def test_an_event_below_a_gap_in_the_chain_fails_every_read(
    store: EventStore, stored: int
) -> None:
    await store.append("u.1", Event("user.created", {"n": 1}, id="e-1", version=stored))
    store.upcaster("user.created", 1, _add("v2"))
    store.upcaster("user.created", 3, _add("v4"))  # none from 2: a gap
    reads: list[Callable[[], Awaitable[Any]]] = [
        lambda: store.get_stream("u.1"),
        lambda: store.read_all(),
        lambda: anext(store.subscribe()),
    ]
    for read in reads:
        with pytest.raises(StoreError) as caught:
            await read()
        message = str(caught.value)
        assert "'e-1'" in message and "'user.created'" in message and "'u.1'" in message
        assert "from version 2" in message and "version 4" in message


async def test_the_chain_completed_later_reads_every_version(store: EventStore) -> None:
    await store.append("u.1", [Event("user.created", {"n": n}, version=n) for n in (1, 2, 3)])
    store.upcaster("user.created", 1, _add("v2"))
    store.upcaster("user.created", 3, _add("v4"))
    store.upcaster("user.created", 2, _add("v3"))  # registered last: the gap is closed
    await store.append("u.1", Event("user.created", {"n": 4}, version=4))
    events = await store.get_stream("u.1")
    assert [event.version for event in events] == [4, 4, 4, 4]
    assert [sorted(event.data) for event in events] == [
        ["n", "v2", "v3", "v4"],
        ["n", "v3", "v4"],
        ["n", "v4"],
        ["n"],
    ]


def test_an_upcaster_past_the_largest_event_version_is_refused() -> None:
    """An upcaster from version 2**31 - 1 (the largest an event can have) was taken: it
    made the type's current version 2**31, so every append of the type was refused for
    good, and reads built events at a version no event can have."""
    store = EventStore()
    for version in (2**31 - 1, 2**40):
        with pytest.raises(ConfigurationError, match=r"must be below 2147483647"):
            store.upcaster("user.created", version, _add("next"))
    store.upcaster("user.created", 2**31 - 2, _add("last"))  # to 2**31 - 1: taken
