"""ValidateMiddleware over an encrypted store's events after a stream was shredded.

A shredded event reads with data None (``metadata["pepperpyshredded"]``), so that
consumers of the whole log keep running; ValidateMiddleware refused it (``expected
object, got None``), so a validated consumer failed at every shredded event. It is
passed on as the store gives it; anything else is validated as before."""

from __future__ import annotations

import pytest

from pepperpy.event import Event, EventProcessor, EventStore, EventValidator, ValidationError
from pepperpy.event.middleware import ValidateMiddleware
from pepperpy.event.security import KeyRing, MemoryKeyStore, StreamEncryption


async def test_a_shredded_event_passes_validation_as_it_is() -> None:
    validator = EventValidator()
    validator.register(
        "user.created",
        {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]},
    )
    processor = EventProcessor()
    processor.middleware(ValidateMiddleware(validator))
    seen: list[tuple[str | None, object]] = []

    @processor.handle("#")
    def handle(event: Event) -> None:
        seen.append((event.stream, event.data))

    crypto = StreamEncryption(KeyRing.generate(), MemoryKeyStore())
    async with EventStore("memory://", encryption=crypto) as store:
        await store.append("user.1", Event("user.created", {"name": "Ada"}))
        await store.append("user.2", Event("user.created", {"name": "Alan"}))
        await store.append("user.3", Event("user.created", {"nome": "typo"}))
        await store.shred_stream("user.1")
        events = [event async for event in store.read_all()]
        await processor.process(events[0])  # shredded: passed on
        await processor.process(events[1])
        with pytest.raises(ValidationError, match="name"):  # still validated
            await processor.process(events[2])
    assert seen == [("user.1", None), ("user.2", {"name": "Alan"})]
    # data None that does not come from a store is still refused
    with pytest.raises(ValidationError):
        await processor.process(Event("user.created", None, {"pepperpyshredded": True}))
