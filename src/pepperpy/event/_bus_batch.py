"""``EventBus.publish_many``: check a whole batch, then hand it to the transport at once.

Every event of the batch is built and checked before any is sent (topic, access, keys,
headers, metadata, JSON), so a bad one refuses the batch with an error naming its index
and nothing is published. The transport then publishes the batch concurrently, keeping
each key's order (``Transport.publish_many``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ._bus_checks import carried_key, check_headers, published_event
from ._bus_loop import refuse_publish, start_to_publish
from ._errors import SerializationError
from ._event import Event, json_native
from ._patterns import plain_name
from .transports.base import check_key

if TYPE_CHECKING:
    from ._bus import EventBus

__all__ = ["Key", "publish_many"]

#: ``publish_many``'s ``key``: one for every message, or a function of the message
Key = str | Callable[[Any], str | None] | None


async def publish_many(
    bus: EventBus,
    topic: str,
    messages: Iterable[Any],
    key: Key,
    headers: Mapping[str, Any] | None,
) -> list[Event]:
    """See :meth:`EventBus.publish_many`."""
    topic = plain_name(topic)  # a StrEnum member: the str it holds
    bus._check_topic(topic)
    if isinstance(messages, str | bytes | bytearray | Mapping) or not isinstance(
        messages, Iterable
    ):
        raise TypeError(
            "messages must be an iterable of messages (a list, a generator), got "
            f"{type(messages).__name__}: to publish one message, use publish()"
        )
    if key is not None and not callable(key):
        check_key(key)  # TypeError, or SerializationError for text no broker carries
        key = plain_name(key)  # an enum member: the str it holds
    if headers:
        check_headers(headers)
    if bus.access is not None:  # a refusal is audited off the loop, then raised
        await bus.access.acheck("publish", topic)
    events: list[Event] = []
    keys: list[str | None] = []
    for index, message in enumerate(messages):
        try:
            event_key = key(message) if callable(key) else key
            if event_key is not None and callable(key):
                if not isinstance(event_key, str):
                    raise TypeError(
                        f"key({_shown(message)}) returned {type(event_key).__name__} "
                        f"{event_key!r}: a key function must return a str or None"
                    )
                check_key(event_key)
                event_key = plain_name(event_key)
            event = _event(topic, message, event_key, headers)
            if event_key is None:
                event_key = carried_key(event)  # an Event (or headers) carrying its key
            events.append(event)
        except Exception as exc:
            named = _at(index, exc)
            if named is exc:
                raise
            raise named from exc
        keys.append(event_key)
    if bus._closed:
        refuse_publish(bus)  # a handler finishing during close() may still publish
    elif not bus._started or bus._unregistered:
        await start_to_publish(bus)
    elif bus._loop is not asyncio.get_running_loop():
        bus._check_loop()
    if events:
        await bus.transport.publish_many(events, keys)
    return events


def _event(topic: str, message: Any, key: str | None, headers: Mapping[str, Any] | None) -> Event:
    """What ``EventBus.publish`` builds, refused here if no transport could carry it."""
    event = published_event(topic, message, key, headers)
    if not (json_native(event.data) and json_native(event.metadata)):
        event.to_json()  # what a broker refuses (a lone surrogate), memory:// too
    return event


def _at(index: int, error: Exception) -> Exception:
    """``error`` naming the message it is about: ``messages[index]``."""
    where = f"publish_many(): messages[{index}] refused, nothing was published"
    kind = type(error)
    if kind in (TypeError, ValueError, SerializationError):
        return kind(f"{where}: {error}")
    error.add_note(where)
    return error


def _shown(message: Any) -> str:
    text = repr(message)
    return text if len(text) <= 60 else f"{text[:45]}...{text[-10:]}"
