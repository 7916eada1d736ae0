"""What a stream entry looks like, and small pieces shared by the readers.

An entry has two fields: ``topic`` (the event type, so readers can filter without
parsing JSON) and ``event`` (the CloudEvents 1.0 structured-mode JSON document). A plain
client may add entries with only ``event``; the topic is then read from its ``type``.
"""

from __future__ import annotations

import logging
import random
from typing import TYPE_CHECKING, Any

from ..._errors import EventError, PatternError, SerializationError
from ..._event import Event
from ..._patterns import _match_tokens, parse_pattern, parse_topic

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = [
    "EVENT_FIELD",
    "POOL_POLL",
    "TOPIC_FIELD",
    "Entries",
    "Backoff",
    "connection_errors",
    "refusals",
    "TopicFilter",
    "as_text",
    "decode_event",
    "entry_topic",
    "logger",
    "parse_id",
    "pool_errors",
    "pool_exhausted",
    "stream_names",
    "unreadable",
]

logger = logging.getLogger("pepperpy.event.transports.redis")

#: longest pause (seconds) between two looks for a free connection of an exhausted pool:
#: one comes back as soon as a command in flight returns
POOL_POLL = 0.02

TOPIC_FIELD = "topic"
EVENT_FIELD = "event"
_TOPIC = TOPIC_FIELD.encode()
_EVENT = EVENT_FIELD.encode()

Fields = dict[bytes, bytes]
#: entries as redis-py returns them: (entry id, fields)
Entries = list[tuple[bytes, Fields]]


def entry_topic(fields: Fields) -> str:
    """The entry's topic: its ``topic`` field, else the CloudEvent's ``type``.

    Raises what :func:`decode_event` raises for an entry without a ``topic`` field that
    carries no readable event.
    """
    raw = fields.get(_TOPIC)
    if raw is not None:
        return raw.decode("utf-8", "replace")
    return decode_event(fields).type


def decode_event(fields: Fields) -> Event:
    """The event an entry carries; :class:`SerializationError` if it carries none.

    Anything else it raises is a bug below it (``Event.from_json`` is meant to raise only
    :class:`SerializationError` for malformed input): readers treat the entry as
    unreadable all the same, see :func:`unreadable`.
    """
    raw = fields.get(_EVENT)
    if raw is None:
        raise SerializationError("stream entry has no 'event' field (CloudEvents JSON)")
    return Event.from_json(raw)


def unreadable(
    reader: str, stream: str, entry_id: bytes | str, exc: Exception, skipped: str
) -> None:
    """Log an entry ``reader`` could not read (its topic, its event), which it ``skipped``.

    One entry, whatever is wrong with it, must never end a reader, nor stop the entries
    after it: every exception that reading one raises makes it a poison entry, logged
    here and skipped (a group acknowledges it). Malformed input (a library error such as
    :class:`SerializationError`) is logged without a traceback; anything else is
    unexpected, and logged with its traceback.
    """
    expected = isinstance(exc, EventError)
    logger.error(
        "%s: %s unreadable entry %s of stream %s: %s",
        reader,
        skipped,
        entry_id.decode() if isinstance(entry_id, bytes) else entry_id,
        stream,
        exc if expected else f"{type(exc).__name__}: {exc}",
        exc_info=None if expected else exc,
    )


class TopicFilter:
    """``pattern`` matching with a bounded cache: readers see the same topics over and over."""

    __slots__ = ("_cache", "_tokens", "pattern")

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self._tokens = parse_pattern(pattern)
        self._cache: dict[str, bool] = {}

    def __call__(self, topic: str) -> bool:
        hit = self._cache.get(topic)
        if hit is not None:
            return hit
        try:
            result = _match_tokens(self._tokens, parse_topic(topic))
        except PatternError:
            logger.warning("ignoring stream entry with malformed topic %r", topic)
            result = False
        if len(self._cache) < 4096:
            self._cache[topic] = result
        return result


def parse_id(raw: bytes | str) -> tuple[int, int]:
    """A stream entry id (``b"1700000000000-3"``) as a tuple that sorts like the stream."""
    text = raw.decode() if isinstance(raw, bytes) else raw
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


class Backoff:
    """Growing, jittered pauses between reconnection attempts."""

    __slots__ = ("_cap", "_delay")

    def __init__(self, cap: float, first: float = 0.05) -> None:
        self._cap = cap
        self._delay = first

    def next(self) -> float:
        delay = self._delay
        self._delay = min(self._cap, delay * 2)
        return delay * random.uniform(0.5, 1.0)


def connection_errors(exceptions: Any) -> tuple[type[BaseException], ...]:
    """The driver errors that mean "Redis is (momentarily) unreachable"."""
    return (exceptions.ConnectionError, exceptions.TimeoutError, OSError)


def refusals(exceptions: Any) -> tuple[type[BaseException], ...]:
    """redis-py's errors for credentials Redis refused (a wrong password, a disabled user,
    no permission): they derive from ``ConnectionError``, but Redis answered, and trying
    again changes nothing. Caught before :func:`connection_errors`."""
    names = ("AuthenticationError", "AuthorizationError")
    return tuple(error for name in names if (error := getattr(exceptions, name, None)))


def pool_errors(exceptions: Any) -> tuple[type[BaseException], ...]:
    """redis-py's ``MaxConnectionsError``: every connection of a client's pool is in use.

    It derives from ``ConnectionError`` but says nothing about the server, so it is
    caught before :func:`connection_errors`. (redis-py releases older than the class
    raise a plain ``ConnectionError``, handled as before.)
    """
    error = getattr(exceptions, "MaxConnectionsError", None)
    return () if error is None else (error,)


def pool_exhausted(client: Redis) -> str:
    """Why a command found no free connection: the pool limit, and how to raise it."""
    limit = client.connection_pool.max_connections
    return (
        f"all {limit} connections of the transport's Redis connection pool are in use "
        f"(redis-py max_connections={limit}); raise the limit with "
        f"max_connections=<n> in the transport's URL (redis://host:6379/0?max_connections=<n>)"
    )


def as_text(value: bytes | str) -> str:
    """A reply value (an entry id, a key type) as text: redis-py returns bytes."""
    return value.decode() if isinstance(value, bytes) else value


def stream_names(streams: list[str]) -> str:
    """Stream names for a log line: all of a few, the first and last of many."""
    if len(streams) <= 3:
        return ", ".join(streams)
    return f"{streams[0]} .. {streams[-1]} ({len(streams)} streams)"
