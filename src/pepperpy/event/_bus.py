"""EventBus: topic pub/sub, in process or over a broker, with one API."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, overload

from ._deadletter import (
    DEAD_LETTER_PREFIX,
    PARTITION_KEY,
    dead_letter_event,
    partition_key,
)
from ._errors import ClosedError, UnknownTopicError
from ._event import Event, make_event
from ._handlers import Handler, is_async_callable
from ._manager import DEAD_LETTER_LIMIT, DeadLetter
from ._patterns import _match_tokens, could_overlap, parse_pattern, parse_topic
from ._retry import RetryPolicy
from .transports import Subscription, Transport, transport_from_url

if TYPE_CHECKING:
    from .security import AccessControl

__all__ = ["DEAD_LETTER_PREFIX", "EventBus"]

logger = logging.getLogger("pepperpy.event.bus")

H = TypeVar("H", bound=Callable[..., Any])


class EventBus:
    """Publish to topics; subscribe with patterns, alone or in competing groups.

    ``transport`` is a URL (``memory://``, ``redis://...``, ``nats://...``,
    ``amqp://...``) or a :class:`~pepperpy.event.Transport`. With ``topics`` declared,
    publishing to a topic no pattern covers, or subscribing to a pattern that can match
    none of them, raises :class:`UnknownTopicError`.

    Handlers that fail are retried per ``retry_policy``; when attempts run out the event
    is republished to ``deadletter.<topic>`` with the reason in its metadata, recorded in
    ``dead_letters`` and passed to the ``on_error`` callbacks.

    With ``access`` (an :class:`~pepperpy.event.security.AccessControl`), ``publish``
    and ``subscribe`` are checked against the principal set with
    :func:`~pepperpy.event.security.acting_as`; a denial raises ``AccessDenied``.
    """

    def __init__(
        self,
        topics: Iterable[str] | None = None,
        *,
        transport: str | Transport = "memory://",
        retry_policy: RetryPolicy = RetryPolicy.EXPONENTIAL,
        access: AccessControl | None = None,
    ) -> None:
        if isinstance(topics, str):
            raise TypeError("topics must be a list of patterns, not a single string")
        self.topics: tuple[str, ...] | None = None
        if topics is not None:
            self.topics = tuple(topics)
            self._declared = [parse_pattern(topic) for topic in self.topics]
        if not isinstance(retry_policy, RetryPolicy):
            raise TypeError(f"retry_policy must be a RetryPolicy, got {retry_policy!r}")
        self.retry_policy = retry_policy
        self.access = access
        self.transport = (
            transport if isinstance(transport, Transport) else transport_from_url(transport)
        )
        self.dead_letters: deque[DeadLetter] = deque(maxlen=DEAD_LETTER_LIMIT)
        self._subscriptions: list[Subscription] = []
        self._unregistered: list[Subscription] = []
        self._error_callbacks: list[Callable[[DeadLetter], Any]] = []
        self._start_lock: asyncio.Lock | None = None
        self._started = False
        self._closed = False
        self._topic_ok: dict[str, bool] = {}

    # -- subscribing ------------------------------------------------------------------

    def subscribe(self, pattern: str, *, group: str | None = None) -> Callable[[H], H]:
        """Decorator: deliver events whose topic matches ``pattern`` to the handler.

        Handlers sharing a ``group`` (and pattern) share the work: each event reaches one
        of them, across processes on a distributed transport.
        """
        parse_pattern(pattern)
        if self.access is not None:
            self.access.check("subscribe", pattern)
        if group is not None and (not isinstance(group, str) or not group):
            raise ValueError(f"group must be a non-empty str or None, got {group!r}")
        if self.topics is not None and not any(
            could_overlap(pattern, t) or could_overlap(pattern, DEAD_LETTER_PREFIX + t)
            for t in self.topics
        ):  # the dead-letter topics of declared topics are declared too
            raise UnknownTopicError(
                f"pattern {pattern!r} can match none of the declared topics {list(self.topics)}"
            )

        def decorator(handler: H) -> H:
            if not callable(handler):
                raise TypeError(f"handler must be callable, got {handler!r}")
            name = self._subscription_name(pattern, group, handler)
            sub = Subscription(pattern, self._deliverer(handler, pattern, group), group, name)
            self._subscriptions.append(sub)
            self._unregistered.append(sub)
            return handler

        return decorator

    def _subscription_name(self, pattern: str, group: str | None, handler: Handler) -> str:
        if group is not None:
            base = f"{group}|{pattern}"
        else:
            qualname = getattr(handler, "__qualname__", type(handler).__qualname__)
            module = getattr(handler, "__module__", "")
            base = f"{module}.{qualname}|{pattern}"
        same = sum(1 for s in self._subscriptions if s.name.startswith(_digest(base)))
        suffix = f"-{same}" if same and group is None else ""
        return _digest(base) + suffix

    def _deliverer(
        self, handler: Handler, pattern: str, group: str | None
    ) -> Callable[[Event], Any]:
        is_async = is_async_callable(handler)
        policy = self.retry_policy

        async def deliver(event: Event) -> None:
            attempt = 1
            while True:
                try:
                    if is_async:
                        await handler(event)
                    else:
                        result = handler(event)
                        if result is not None and hasattr(result, "__await__"):
                            await result
                    return
                except Exception as exc:
                    if policy.should_retry(exc, attempt):
                        await policy.sleep(attempt)
                        attempt += 1
                        continue
                    await self._dead_letter(DeadLetter(event, handler, exc, attempt), group)
                    return

        return deliver

    @overload
    def on_error(self, callback: None = None) -> Callable[[H], H]: ...

    @overload
    def on_error(self, callback: H) -> H: ...

    def on_error(self, callback: H | None = None) -> H | Callable[[H], H]:
        """Register a sync or async callback receiving each :class:`DeadLetter`.

        Usable as ``@bus.on_error``, ``@bus.on_error()`` or ``bus.on_error(callback)``,
        like :meth:`EventManager.on_error`.
        """
        if callback is None:
            return self.on_error
        if not callable(callback):
            raise TypeError(f"error callback must be callable, got {callback!r}")
        self._error_callbacks.append(callback)
        return callback

    async def _dead_letter(self, letter: DeadLetter, group: str | None) -> None:
        self.dead_letters.append(letter)
        event = letter.event
        logger.error(
            "bus handler %s failed for %s (%s) after %d attempt(s)",
            getattr(letter.handler, "__qualname__", letter.handler),
            event.type,
            event.id,
            letter.attempts,
            exc_info=letter.exception,
        )
        for callback in list(self._error_callbacks):
            try:
                result = callback(letter)
                if result is not None and hasattr(result, "__await__"):
                    await result
            except Exception:
                logger.exception("bus on_error callback %r failed", callback)
        dead = dead_letter_event(
            event,
            reason=f"{type(letter.exception).__name__}: {letter.exception}",
            attempts=letter.attempts,
            group=group,
        )
        if dead is None:
            return
        try:
            await self.transport.publish(dead, key=partition_key(dead))
        except Exception:
            logger.exception("could not publish dead letter for %s (%s)", event.type, event.id)

    # -- publishing -------------------------------------------------------------------

    async def publish(
        self,
        topic: str,
        message: Any = None,
        *,
        key: str | None = None,
        headers: Mapping[str, Any] | None = None,
    ) -> Event:
        """Publish ``message`` (any JSON-able value, or an :class:`Event`) to ``topic``.

        Returns the published event. ``key`` orders events within a group (events with
        one key are handled in publish order); ``headers`` are added to the metadata.
        """
        self._check_topic(topic)
        if self.access is not None:
            self.access.check("publish", topic)
        if key is not None and not isinstance(key, str):
            raise TypeError(f"key must be a str, got {type(key).__name__}")
        if isinstance(message, Event):
            if message.type == topic and not headers and key is None:
                event = message
            else:  # a copy (same id), so the caller's event keeps its own metadata
                event = message.replace(type=topic)
                if headers:
                    event.metadata.update(headers)
        else:
            event = make_event(topic, message, headers)
        if key is not None:
            event.metadata[PARTITION_KEY] = key
        if self._closed:
            raise ClosedError("the EventBus is closed")
        if not self._started or self._unregistered:
            await self.start()
        await self.transport.publish(event, key=key)
        return event

    def _check_topic(self, topic: str) -> None:
        ok = self._topic_ok.get(topic)
        if ok is None:
            tokens = parse_topic(topic)
            ok = self.topics is None or any(_match_tokens(p, tokens) for p in self._declared)
            if len(self._topic_ok) < 4096:
                self._topic_ok[topic] = ok
        if not ok:
            raise UnknownTopicError(
                f"topic {topic!r} matches none of the declared topics {list(self.topics or ())}"
            )

    # -- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        """Connect and register every subscription; returns once all are registered.

        Called implicitly by the first :meth:`publish`; call it (or use ``async with``)
        to consume without publishing.
        """
        if self._closed:
            raise ClosedError("the EventBus is closed")
        if self._start_lock is None:
            self._start_lock = asyncio.Lock()
        async with self._start_lock:
            if not self._started:
                await self.transport.start()
                self._started = True
            while self._unregistered:
                sub = self._unregistered[0]
                await self.transport.subscribe(sub)
                self._unregistered.pop(0)

    async def close(self) -> None:
        """Stop consuming, finishing events in progress, and disconnect."""
        if self._closed:
            return
        self._closed = True
        if self._started:
            await self.transport.close()

    async def __aenter__(self) -> EventBus:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()[:16]
