"""What the bus checks in what it is given, beyond topics and patterns.

Headers and event metadata must be JSON that every transport can carry (memory://
included, so a program that works in process works over a broker). A subscription
pattern that matches dead letters receives the data of the topics they came from:
:func:`dead_letter_sources` names those topics, for the access check.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._deadletter import DEAD_LETTER_PREFIX, PARTITION_KEY
from ._errors import SerializationError
from ._event import Event, make_event
from ._frozen import check_json
from ._json import dumps
from ._patterns import parse_pattern
from ._shredded import SHREDDED_MARKER, refuse_shredded_marker, shredded_read
from .transports.base import check_key

__all__ = ["check_headers", "check_metadata", "dead_letter_sources", "published_event"]


def check_headers(headers: Mapping[str, Any]) -> None:
    """Refuse headers no transport can carry: the same rule on memory as on a broker."""
    if not isinstance(headers, Mapping):
        raise TypeError(
            f"headers must be a mapping of str to JSON-able values, got {type(headers).__name__}"
        )
    for name in headers:
        if not isinstance(name, str):
            raise TypeError(f"headers keys must be str, got {name!r} ({type(name).__name__})")
    try:
        check_json(dict(headers), "headers")
        dumps(dict(headers))
    except SerializationError as exc:
        raise SerializationError(f"headers must hold JSON-able values: {exc}") from exc


def check_metadata(metadata: Mapping[str, Any]) -> None:
    """Refuse an event whose metadata no transport can carry (memory:// included)."""
    for name in metadata:
        if not isinstance(name, str):
            raise TypeError(
                f"event metadata keys must be str, got {name!r} ({type(name).__name__})"
            )
    try:
        check_json(dict(metadata), "metadata")
        dumps(metadata)
    except SerializationError as exc:
        raise SerializationError(f"event metadata must hold JSON-able values: {exc}") from exc


def dead_letter_sources(pattern: str) -> list[str]:
    """The patterns of the topics whose dead letters ``pattern`` matches.

    ``deadletter.T`` matches ``pattern`` exactly when ``T`` matches one of them (none
    when the pattern matches no dead letter): ``deadletter.#`` and ``#`` carry ``#``,
    ``*.orders.*`` carries ``orders.*``, ``#.refund.#`` carries ``#.refund.#``.
    """
    prefix = DEAD_LETTER_PREFIX.rstrip(".")

    def sources(tokens: tuple[str, ...]) -> list[tuple[str, ...]]:
        if not tokens:
            return []
        head, rest = tokens[0], tokens[1:]
        if head == "#":  # it covers "deadletter" and part of T, or nothing
            return [tokens, *sources(rest)]
        if head in ("*", prefix) and rest:
            return [rest]
        return []

    found: list[str] = []
    for tokens in sources(parse_pattern(pattern)):
        carried = ".".join(tokens)
        if carried not in found:
            found.append(carried)
    return found


def published_event(
    topic: str, message: Any, key: str | None, headers: Mapping[str, Any] | None
) -> Event:
    """The event ``publish(topic, message, key=, headers=)`` sends (key and headers checked).

    A ready :class:`Event` whose type is ``topic``, with no headers or key to add, is
    sent as it is; otherwise a copy (same id), so the caller's event keeps its own
    metadata. ``key`` is recorded in the metadata, where consumers find it.
    """
    if headers and SHREDDED_MARKER in headers:
        raise refuse_shredded_marker("headers")
    if isinstance(message, Event):
        if message.metadata:
            check_metadata(message.metadata)
            if SHREDDED_MARKER in message.metadata and not _marked_by_a_shred(message, topic):
                raise refuse_shredded_marker("event metadata")
        if message.type == topic and not headers and key is None:
            event = message
        else:
            event = message.replace(type=topic)
            if headers:
                event.metadata.update(headers)
    else:
        event = make_event(topic, message, headers)
    if key is not None:
        event.metadata[PARTITION_KEY] = key
    return event


def carried_key(event: Event) -> str | None:
    """The key an event published without ``key=`` goes with: the ``partitionkey`` its
    metadata carries (an :class:`Event` forwarded from another bus, a dead letter's
    original re-driven, or ``headers`` naming one), if it is a str; checked as ``key=``
    is.

    Consumers read the key from the metadata (the transports' key lanes on NATS and
    RabbitMQ, the bus's own dead letters), so an event carrying one but routed without
    it reached a group's partitions at random: on RabbitMQ a group ran such events of
    one key at once, out of order, while NATS kept them in order.
    """
    key = event._metadata.get(PARTITION_KEY) if event._metadata else None
    if not isinstance(key, str):
        return None
    check_key(key)
    return key


def _marked_by_a_shred(event: Event, topic: str) -> bool:
    """Whether ``event`` may carry the shredded marker (reserved, see ``._shredded``): a
    shredded event as a store read gave it, or the dead letter a
    ``DeadLetterMiddleware`` made of one (data None, to a dead-letter topic)."""
    if shredded_read(event):
        return True
    return event.data is None and topic.startswith(DEAD_LETTER_PREFIX)
