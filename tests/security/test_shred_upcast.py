"""A shredded stream whose events are at an older schema version than the store's
upcasters bring them to: each such event was run through its upcaster with ``data=None``,
and the upcaster's error failed the read of the stream and of the whole log (every
projection over it stopped at the shredded event). A shredded event has no data to
upcast: it reads at its stored version, data None, marked shredded."""

from __future__ import annotations

from typing import Any

from pepperpy.event import Event, EventStore
from pepperpy.event.security import KeyRing, MemoryKeyStore, StreamEncryption


async def test_a_shredded_event_is_not_upcast(url: str) -> None:
    crypto = StreamEncryption(KeyRing.generate(), MemoryKeyStore())
    async with EventStore(url, encryption=crypto) as store:
        # written before the schema changed
        await store.append("user.1", Event("user.created", {"name": "Ada L"}, version=1))
        await store.append("user.2", Event("user.created", {"name": "Alan T"}, version=1))

        @store.upcaster("user.created", from_version=1)
        def split(data: dict[str, Any]) -> dict[str, Any]:
            first, _, last = data["name"].partition(" ")
            return {"first": first, "last": last}

        before = await store.get_stream("user.1")
        assert (before[0].version, before[0].data) == (2, {"first": "Ada", "last": "L"})

        assert await store.shred_stream("user.1")
        (shredded,) = await store.get_stream("user.1")
        assert shredded.data is None and shredded.metadata["pepperpyshredded"] is True
        assert shredded.version == 1  # as stored: nothing was upcast
        # the rest of the log reads on, upcast as before
        log = [(event.stream, event.version, event.data) async for event in store.read_all()]
        assert log == [("user.1", 1, None), ("user.2", 2, {"first": "Alan", "last": "T"})]
