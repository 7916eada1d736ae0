"""EventBus: topic pub/sub, in process or over a broker, with one API.

Delivering to a handler (retries, the principal it runs as, what ``close()`` and
``unsubscribe()`` wait for) is in ``_bus_delivery.py``; the checks on headers, metadata
and the dead letters a pattern receives are in ``_bus_checks.py``; subscription names,
late registration, ``unsubscribe()`` and ``delete_group()`` in ``_bus_subscriptions.py``;
the event loop a bus belongs to and ``close()`` in ``_bus_loop.py``; what becomes of an
event a handler failed on (logs, ``on_error`` callbacks, ``deadletter.<topic>``) in
``_bus_dead_letters.py``.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from operator import itemgetter
from typing import TYPE_CHECKING, Any, TypeVar, overload

from ._bus_batch import Key
from ._bus_batch import publish_many as _publish_many
from ._bus_checks import carried_key, check_headers, published_event
from ._bus_checks import dead_letter_sources as _dead_letter_sources  # tests import it here
from ._bus_dead_letters import dead_letter
from ._bus_delivery import Delivery, Registration, deliverer
from ._bus_health import BusHealth
from ._bus_health import health as _health
from ._bus_logging import Repeats
from ._bus_loop import check_caller_loop, check_loop, connect, refuse_publish, start_to_publish
from ._bus_loop import close as _close
from ._bus_serve import serve as _serve
from ._bus_subscriptions import check_group, refused, register_late, subscription_name
from ._bus_subscriptions import delete_group as _delete_group
from ._bus_subscriptions import unsubscribe as _unsubscribe
from ._closing import AsyncClosing
from ._deadletter import DEAD_LETTER_PREFIX
from ._errors import ClosedError, ConfigurationError, UnknownTopicError
from ._event import Event
from ._handlers import check_handler, check_not_bare
from ._manager import DEAD_LETTER_LIMIT, DeadLetter
from ._options import check_instance
from ._patterns import _match_tokens, could_overlap, parse_pattern, parse_topic, plain_name
from ._redact import redact_url
from ._removal import remove_last
from ._retry import RetryPolicy, check_policy
from .security._principal import current_principal
from .transports import Subscription, Transport, transport_from_url
from .transports.base import check_key

if TYPE_CHECKING:
    from .security import AccessControl

__all__ = ["DEAD_LETTER_PREFIX", "EventBus"]

logger = logging.getLogger("pepperpy.event.bus")

_DEAD_LETTER_TOKEN = DEAD_LETTER_PREFIX.rstrip(".")

H = TypeVar("H", bound=Callable[..., Any])


class EventBus(AsyncClosing):
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
    :func:`~pepperpy.event.security.acting_as`; a denial raises ``AccessDenied``. What a
    subscription or error callback can receive is checked when it is registered: a
    pattern that matches dead letters (``deadletter.<topic>``) also needs ``subscribe``
    on the topics whose data they carry, and ``on_error`` needs ``subscribe`` on ``#``.

    Every handler and error callback runs as the principal that registered it (None:
    anonymous), whoever published the event or started the bus.
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
            url = (  # EventBus("redis://..."): the URL given where the topics go
                f" (a transport URL goes in transport=...: "
                f"EventBus(transport={redact_url(topics)!r}))"
                if "://" in topics
                else ""
            )
            raise TypeError(f"topics must be a list of patterns, not a single string{url}")
        self.topics: tuple[str, ...] | None = None
        if topics is not None:
            declared = tuple(topics)
            self._declared = [parse_pattern(topic) for topic in declared]
            # a StrEnum member is kept as the str it holds (as subscribe and publish do)
            self.topics = tuple(plain_name(topic) for topic in declared)
        self.retry_policy = retry_policy
        if access is not None:
            from .security import AccessControl

            check_instance(access, AccessControl, "access", optional=True)
        self.access = access
        if isinstance(transport, Transport):
            if transport._owned:
                raise ConfigurationError(
                    f"this {type(transport).__name__} already belongs to another EventBus: "
                    "create one transport per bus (a transport holds the connections, "
                    "consumers and subscriptions of the bus it serves; two buses on one "
                    "transport would share them: events reaching only one bus, consumer "
                    "names clashing, one close() closing both)"
                )
            self.transport = transport
        else:
            self.transport = transport_from_url(transport)
        self.transport._owned = True
        self.dead_letters: deque[DeadLetter] = deque(maxlen=DEAD_LETTER_LIMIT)
        self._dead_letter_count = 0  # all of them, for health()
        #: which dead letters are logged with their traceback, and which retries at
        #: WARNING: one per handler and exception type a minute (see _bus_logging)
        self._tracebacks = Repeats()
        self._retry_warnings = Repeats()
        self._subscriptions: list[Subscription] = []
        self._unregistered: list[Subscription] = []
        self._registrations: dict[Subscription, Registration] = {}
        self._name_counts: dict[str, int] = {}
        self._removing: set[asyncio.Task[None]] = set()
        #: the loop the bus started on: its connections and consumers live there
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed_reason = "the EventBus is closed"
        self._error_callbacks: list[tuple[Callable[[DeadLetter], Any], str | None]] = []
        self._start_lock: asyncio.Lock | None = None
        self._started = False
        self._closed = False
        self._closing: asyncio.Task[None] | None = None
        self._registering: asyncio.Task[None] | None = None
        self._topic_ok: dict[str, bool] = {}
        #: called when the shutdown begins (serve() waits for it); set by _bus_serve
        self._on_close: list[Callable[[], None]] = []
        self._serving = False
        #: the handler calls in progress (``_bus_delivery``), for serve()'s shutdown
        self._deliveries: set[Delivery] = set()
        #: serve()'s shutdown_timeout passed: no further delivery starts
        self._cut_off = False
        #: the waits between two tries of a delivery (``_bus_delivery``): close() ends them
        self._pauses: set[asyncio.Future[bool]] = set()

    @property
    def retry_policy(self) -> RetryPolicy:
        """How failed handlers are tried again; a new one applies from the next failure,
        to every subscription (those made before it too), as on the manager."""
        return self._retry_policy

    @retry_policy.setter
    def retry_policy(self, value: RetryPolicy) -> None:
        self._retry_policy = check_policy(value)

    # -- subscribing ------------------------------------------------------------------

    @overload
    def subscribe(
        self, pattern: str, handler: None = None, *, group: str | None = None
    ) -> Callable[[H], H]: ...

    @overload
    def subscribe(self, pattern: str, handler: H, *, group: str | None = None) -> H: ...

    def subscribe(
        self, pattern: str, handler: H | None = None, *, group: str | None = None
    ) -> H | Callable[[H], H]:
        """Deliver events whose topic matches ``pattern`` to the handler; returns it unchanged.

        Usable as ``@bus.subscribe("orders.*")`` or ``bus.subscribe("orders.*", handler)``,
        as ``manager.on`` is; both forms check the pattern and the handler alike.

        Handlers sharing a ``group`` (and pattern) share the work: each event reaches one
        of them, across processes on a distributed transport. The handler runs as the
        principal acting now (:func:`~pepperpy.event.security.acting_as`; None if none),
        whoever publishes.

        On a bus already started, the subscription is registered with the broker in the
        background at once; ``await bus.start()`` waits until it is. A registration that
        fails is logged and raised again by the next ``start()`` or ``publish()``.
        """
        if self._closed:
            raise ClosedError(self._closed_reason)
        if self._started:
            check_caller_loop(self)  # registering it would need the bus's own loop
        if not isinstance(pattern, str):
            check_not_bare("bus.subscribe", pattern, "orders.*")
            raise TypeError(f"pattern must be a str, got {type(pattern).__name__}")
        pattern = plain_name(pattern)  # a StrEnum member is kept as the str it holds
        if isinstance(handler, str):  # subscribe(pattern, "billing"): a group meant
            raise TypeError(
                f"handler must be callable, got the str {handler!r}; group is keyword-only: "
                f"subscribe({pattern!r}, group={handler!r})"
            )
        parse_pattern(pattern)
        self.transport.check_pattern(pattern)
        if self.access is not None:
            self._check_subscribe(pattern)
        if group is not None:
            check_group(group, optional=True)
            # a (str, Enum) member formats as "G.BILLING": the group's name on the broker
            # would not be the one a plain "billing" (or a StrEnum) subscriber gets
            group = plain_name(group)
        if self.topics is not None and not any(
            could_overlap(pattern, t) or could_overlap(pattern, DEAD_LETTER_PREFIX + t)
            for t in self.topics
        ):  # the dead-letter topics of declared topics are declared too
            raise UnknownTopicError(
                f"pattern {pattern!r} can match none of the declared topics {list(self.topics)}"
            )
        principal = current_principal()

        def decorator(func: H) -> H:
            check_handler(func)
            name = subscription_name(self, pattern, group, func)
            registration = Registration(func, principal)
            deliver = deliverer(self, registration, pattern, group)
            sub = Subscription(pattern, deliver, group, name)
            self._registrations[sub] = registration
            self._subscriptions.append(sub)
            self._unregistered.append(sub)
            if self._started:
                register_late(self)
            return func

        if handler is None:
            return decorator
        return decorator(handler)

    def _check_subscribe(self, pattern: str) -> None:
        """Refuse a subscription that could receive data its principal may not see.

        Dead letters of topic ``T`` travel as ``deadletter.T`` with ``T``'s data, so a
        pattern matching some of them also needs ``subscribe`` on the topics they carry.
        """
        assert self.access is not None
        self.access.check("subscribe", pattern)
        for carried in _dead_letter_sources(pattern):
            if carried != pattern:
                self.access.check(
                    "subscribe",
                    carried,
                    needed_by=f"subscribe({pattern!r}): dead letters carry their topic's data",
                )

    async def unsubscribe(
        self, pattern: str, handler: Callable[..., Any], *, group: str | None = None
    ) -> bool:
        """Remove ``handler``'s subscriptions to exactly ``pattern`` in ``group``.

        Returns True if any was removed, False if there was none (like
        :meth:`EventManager.off`; handlers compare with ``==``). Returns once the handler
        gets nothing more and its deliveries in progress have finished. A group member
        leaves the group: its share of later events goes to the remaining members, in
        this process or others, and nothing is lost; the group stays on the broker for
        them. Called from the handler being removed, it returns at once and the removal
        completes after that handler returns (waiting would wait for the caller itself);
        likewise from a handler the one being removed waits for (on ``memory://`` its
        ``publish`` waits for the handlers it reaches).
        """
        return await _unsubscribe(self, pattern, handler, group)

    async def delete_group(self, pattern: str, group: str) -> None:
        """Retire ``group`` on ``pattern``: delete it from the broker, with its backlog.

        ``pattern`` and ``group`` name the group as ``subscribe(pattern, group=group)``
        does: a group is its name *and* its pattern, so renaming a group or changing its
        pattern makes a new one, and the old one keeps every matching event (on a broker)
        until it is deleted. Its unhandled events are dropped. A group that does not
        exist is no error. A later ``subscribe`` of the same group starts it afresh,
        with only the events published after it.

        Refused with :class:`ConfigurationError` while a subscription of this bus is in
        the group (unsubscribe it first). Members in other processes cannot be seen
        from here: stop them first (each transport's page says what becomes of those
        still running). The pattern need not be among declared ``topics`` (the group may
        come from an earlier version of the program). With ``access``, needs ``delete``
        on ``pattern``. Connects (starts the bus) if it is not started.
        """
        await _delete_group(self, pattern, group)

    @overload
    def on_error(self, callback: None = None) -> Callable[[H], H]: ...

    @overload
    def on_error(self, callback: H) -> H: ...

    def on_error(self, callback: H | None = None) -> H | Callable[[H], H]:
        """Register a sync or async callback receiving each :class:`DeadLetter`.

        Usable as ``@bus.on_error``, ``@bus.on_error()`` or ``bus.on_error(callback)``,
        like :meth:`EventManager.on_error`. A letter holds the failed event, of any
        topic: with ``access``, registering needs ``subscribe`` on ``#``. The callback
        runs as the principal that registered it.
        """
        if callback is None:
            return self.on_error
        check_handler(callback, "error callback")
        if self.access is not None:
            self.access.check(
                "subscribe", "#", needed_by="on_error(): letters carry events of every topic"
            )
        self._error_callbacks.append((callback, current_principal()))
        return callback

    def off_error(self, callback: Callable[..., Any]) -> bool:
        """Undo one :meth:`on_error` of ``callback``: True if it was registered.

        A callback registered twice is called twice per dead letter; each ``off_error``
        removes one registration, the most recent first. Callbacks compare with ``==``
        (a bound method taken again matches). Safe from inside an error callback: the
        dead letter being dispatched still reaches every callback registered when its
        dispatch began; the next one does not reach ``callback``. A ``callback`` that
        is not callable is a ``TypeError``.
        """
        return remove_last("off_error", self._error_callbacks, callback, itemgetter(0))

    async def _dead_letter(
        self, letter: DeadLetter, group: str | None, cut: str | None = None
    ) -> None:
        await dead_letter(self, letter, group, cut)

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
        Without ``key``, an event whose metadata carries a ``partitionkey`` (an
        :class:`Event` forwarded or re-driven, or ``headers``) is published with that key.
        """
        topic = plain_name(topic)  # a StrEnum member: the str it holds
        self._check_topic(topic)
        if self.access is not None:  # a refusal is audited off the loop, then raised
            await self.access.acheck("publish", topic)
        if key is not None:
            check_key(key)
            key = plain_name(key)  # an enum member: the str it holds, a CloudEvents extension
        if headers:
            check_headers(headers)
        event = published_event(topic, message, key, headers)
        if key is None:
            key = carried_key(event)  # an Event (or headers) carrying its partitionkey
        if self._closed:
            refuse_publish(self)  # a handler finishing during close() may still publish
        elif not self._started or self._unregistered:
            await start_to_publish(self)
        elif self._loop is not asyncio.get_running_loop():
            self._check_loop()
        await self.transport.publish(event, key=key)
        return event

    async def publish_many(
        self,
        topic: str,
        messages: Iterable[Any],
        *,
        key: Key = None,
        headers: Mapping[str, Any] | None = None,
    ) -> list[Event]:
        """Publish every message of ``messages`` to ``topic``, as a batch; returns the events.

        What a loop of :meth:`publish` does, in far fewer round trips: the events go out
        concurrently, except that events with one key are published in batch order.
        ``key`` is one key for every message, or a function of the message returning its
        key (or None); ``headers`` are added to every event's metadata. Every event is
        built and checked before any is sent: one the bus refuses refuses the batch,
        naming its index, and nothing is published. If some could not be published,
        :class:`~pepperpy.event.BatchPublishError` says which were stored (``outcomes``);
        those stay published.
        """
        return await _publish_many(self, topic, messages, key, headers)

    def _check_topic(self, topic: str) -> None:
        if topic.__class__ is not str:
            raise TypeError(f"topic must be a str, got {type(topic).__name__}: {topic!r}")
        ok = self._topic_ok.get(topic)
        if ok is None:
            tokens = parse_topic(topic)
            ok = self.topics is None or self._declares(tokens)
            if len(self._topic_ok) < 4096:
                self._topic_ok[topic] = ok
        if not ok:
            raise UnknownTopicError(
                f"topic {topic!r} matches none of the declared topics {list(self.topics or ())}"
                f" (nor their dead-letter topics, {DEAD_LETTER_PREFIX}<topic>)"
            )

    def _declares(self, tokens: tuple[str, ...]) -> bool:
        """True when a declared topic, or the dead-letter topic of one, matches ``tokens``.

        ``deadletter.T`` is declared with ``T`` (as for ``subscribe``): dead letters are
        published there, and a program may publish there too, re-driving or forwarding
        them. Only one level: dead letters are never dead-lettered again.
        """
        if any(_match_tokens(pattern, tokens) for pattern in self._declared):
            return True
        return (
            len(tokens) > 1
            and tokens[0] == _DEAD_LETTER_TOKEN
            and any(_match_tokens(pattern, tokens[1:]) for pattern in self._declared)
        )

    # -- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        """Connect and register every subscription; returns once all are registered.

        Called implicitly by the first :meth:`publish`; call it (or use ``async with``)
        to consume without publishing. A connection still not made after a second and a
        half is logged (a WARNING naming the broker and the transport's
        ``connect_timeout``), once.
        """
        if self._closed:
            raise ClosedError(self._closed_reason)
        self._check_loop()
        if self._start_lock is None:
            self._start_lock = asyncio.Lock()
        async with self._start_lock:
            if self._closed:
                raise ClosedError(self._closed_reason)
            if not self._started:
                await connect(self)  # transport.start(), logging a slow connection
                self._loop = asyncio.get_running_loop()
                self._started = True
            while self._unregistered:
                sub = self._unregistered[0]
                try:
                    await self.transport.subscribe(sub)
                except ConfigurationError as exc:
                    refused(self, sub, exc)  # removed: it would be refused every time
                    raise
                self._unregistered.pop(0)

    async def close(self) -> None:
        """Stop consuming, finishing events in progress, and disconnect.

        Every call returns only once the shutdown is complete (concurrent calls share
        it). Meanwhile the bus's handlers in progress may still publish (their follow-up
        events), until the transport has closed; any other publish is refused with
        :class:`ClosedError` from the moment ``close()`` is called. Called from one of
        this bus's own handlers, ``close()`` starts the shutdown and returns at once:
        waiting for it would wait for the calling handler itself. The shutdown then
        completes after that handler returns; a later ``close()`` (or the end of
        ``async with``) waits for it.
        """
        await _close(self)

    def health(self) -> BusHealth:
        """A snapshot of this bus for a readiness or liveness check: its state, whether
        its broker is reachable, its subscriptions, the handler calls in progress and how
        long the oldest has run, and how many events it dead-lettered. Asks nothing of
        the broker, so it is cheap to call often; ``.ready`` says whether the bus runs
        with its broker reachable and every subscription registered."""
        return _health(self)

    async def serve(
        self,
        *,
        signals: Iterable[signal.Signals | int] = (signal.SIGINT, signal.SIGTERM),
        shutdown_timeout: float | None = None,
    ) -> None:
        """Run as a consumer service: start, wait for a signal or :meth:`close`, then close.

        Starts the bus if needed, logs what it serves, and waits until one of ``signals``
        arrives (handled from the start on, connecting included, and for that time
        only; the handlers in place before are put back when it arrives, so a second one
        acts as without ``serve()``) or until ``close()`` is called elsewhere (a
        handler, another task). Then it closes the bus as ``close()`` does, letting the
        deliveries in progress finish (logged at once and every few seconds), and
        returns. A signal while still connecting gives the connection up, closes the bus
        and returns. Cancelled, it closes the bus too and propagates the cancellation.
        Where signals cannot be handled (a thread other than the main one, Windows), or
        with ``signals=()``, only ``close()`` ends it. Raises :class:`ClosedError` on a
        closed bus.

        ``shutdown_timeout`` (seconds, None: no limit) bounds the wait for the
        deliveries in progress once closing began: then they are cancelled (a broker
        delivers their events again, ``memory://`` loses them), the bus closes and
        ``serve()`` raises ``TimeoutError``.
        """
        await _serve(self, signals, shutdown_timeout)

    def _check_loop(self) -> None:
        """Refuse work from another event loop than the bus's (``_bus_loop.check_loop``)."""
        check_loop(self)

    async def __aenter__(self) -> EventBus:
        try:
            await self.start()
        except BaseException:
            await self.close()  # what start() opened: ``__aexit__`` will not run
            raise
        return self
