"""The shredded marker (``metadata["pepperpyshredded"]``) is reserved to the library.

ValidateMiddleware passes on unchecked an event that reads as shredded (data None,
marked), so anyone who could append or publish the marker made an event with data None
that skipped validation: on an encrypted store it even read back as shredded (no
upcasting, no validation). Appending or publishing it is now refused naming the key,
as the store's own ``pepperpybytes`` is; a shredded event as a store read gave it may
still be copied on as it is (to another store, or to the bus)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pepperpy.event import (
    Event,
    EventBus,
    EventProcessor,
    EventStore,
    EventValidator,
    SerializationError,
    ValidationError,
)
from pepperpy.event.middleware import ValidateMiddleware
from pepperpy.event.security import KeyRing, MemoryKeyStore, StreamEncryption

MARKED = {"pepperpyshredded": True}

FORGED: list[Any] = [
    Event("user.created", None, MARKED),
    Event("user.created", {"name": 1}, {"a": 1, "pepperpyshredded": True}),
    Event("user.created", None, {"pepperpyshredded": False}),
    {"type": "user.created", "data": None, "metadata": MARKED},
    {"type": "user.created", "data": None, "metadata": MARKED, "source": "s"},
    [Event("user.created", {"name": "ok"}), {"type": "user.created", "metadata": MARKED}],
]


def _validated() -> tuple[EventProcessor, list[Event]]:
    validator = EventValidator()
    validator.register(
        "user.created",
        {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]},
    )
    processor = EventProcessor()
    processor.middleware(ValidateMiddleware(validator))
    seen: list[Event] = []

    @processor.handle("#")
    def handle(event: Event) -> None:
        seen.append(event)

    return processor, seen


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
@pytest.mark.parametrize("forged", FORGED)
async def test_appending_the_marker_is_refused(url: str, encrypted: bool, forged: Any) -> None:
    crypto = StreamEncryption(KeyRing.generate(), MemoryKeyStore()) if encrypted else None
    async with EventStore(url, encryption=crypto) as store:
        with pytest.raises(SerializationError, match="'pepperpyshredded' is reserved"):
            await store.append("user.1", forged)
        with pytest.raises(SerializationError, match="'pepperpyshredded' is reserved"):
            await store.append_streams({"user.2": forged})
        assert await store.read_all() == []  # nothing written


async def test_the_forgery_no_longer_skips_validation() -> None:
    """What the refusal prevents: read back, the forged event passed validation."""
    processor, seen = _validated()
    crypto = StreamEncryption(KeyRing.generate(), MemoryKeyStore())
    async with EventStore("memory://", encryption=crypto) as store:
        with pytest.raises(SerializationError, match="reserved"):
            await store.append("user.1", Event("user.created", None, MARKED))
        await store.append("user.1", Event("user.created", None, {"other": True}))
        (event,) = await store.get_stream("user.1")
        with pytest.raises(ValidationError):  # data None unmarked: validated, refused
            await processor.process(event)
    assert seen == []


async def test_a_shredded_event_read_from_a_store_is_copied_on(url: str) -> None:
    crypto = StreamEncryption(KeyRing.generate(), MemoryKeyStore())
    processor, seen = _validated()
    async with (
        EventStore("memory://", encryption=crypto) as source,
        EventStore(url, encryption=StreamEncryption(KeyRing.generate())) as copy,
    ):
        await source.append("user.1", Event("user.created", {"name": "Ada"}, {"c": 1}))
        await source.shred_stream("user.1")
        (shredded,) = await source.get_stream("user.1")
        assert shredded.data is None and shredded.metadata == {"c": 1, **MARKED}
        await copy.append("user.1", shredded)
        (copied,) = await copy.get_stream("user.1")
        assert (copied.data, copied.metadata) == (None, {"c": 1, **MARKED})
        await processor.process(copied)  # still reads as shredded: passed on
        # a copy of it made by replace() is no longer a read event: refused
        with pytest.raises(SerializationError, match="reserved"):
            await copy.append("user.2", shredded.replace(metadata=dict(shredded.metadata)))
    assert [event.id for event in seen] == [shredded.id]


async def test_publishing_the_marker_is_refused() -> None:
    crypto = StreamEncryption(KeyRing.generate(), MemoryKeyStore())
    async with EventBus() as bus, EventStore("memory://", encryption=crypto) as store:
        got: list[Event] = []
        arrived = asyncio.Event()

        def handle(event: Event) -> None:
            got.append(event)
            arrived.set()

        bus.subscribe("user.*", handle)
        for message, headers in [
            (Event("user.created", None, MARKED), None),
            (Event("user.created", {"name": 1}, MARKED), None),
            ({"name": 1}, MARKED),
            (None, {"x": 1, "pepperpyshredded": True}),
        ]:
            with pytest.raises(SerializationError, match="'pepperpyshredded' is reserved"):
                await bus.publish("user.created", message, headers=headers)
            with pytest.raises(SerializationError, match="'pepperpyshredded' is reserved"):
                await bus.publish_many("user.created", [message], headers=headers)
        # a shredded event as the store read it may go on the bus as it is
        await store.append("user.1", Event("user.created", {"name": "Ada"}))
        await store.shred_stream("user.1")
        (shredded,) = await store.get_stream("user.1")
        await bus.publish("user.created", shredded)
        # the dead letter of one (DeadLetterMiddleware copies its metadata) too
        dead = Event("deadletter.user.created", None, {**MARKED, "dlreason": "x"})
        await bus.publish("deadletter.user.created", dead)
        with pytest.raises(SerializationError, match="reserved"):
            await bus.publish("deadletter.user.created", dead.replace(data={"name": 1}))
        async with asyncio.timeout(10):
            await arrived.wait()
    assert [event.id for event in got] == [shredded.id]
