"""NotificationSystem: turn events into messages on email, webhooks, push, SMS and more."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import hashlib
import inspect
import json
import logging
import os
import re
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from math import inf, isfinite
from types import TracebackType
from typing import Any, TypeVar, overload

from .._bus import EventBus
from .._errors import ClosedError, ConfigurationError, EventError, NotificationError
from .._event import Event
from .._handlers import is_async_callable
from .._loops import settled
from .._manager import EventManager
from .._patterns import parse_pattern
from .._retry import RetryPolicy
from ._idempotency import Claim, IdempotencyStore, store_from
from ._loopclients import owned_by
from ._models import (
    ChannelResult,
    Notification,
    NotificationDeadLetter,
    NotificationResult,
    one_line,
)
from ._ratelimit import RateLimit
from ._recipients import resolve_recipient
from ._templates import Rendered, TemplateLibrary
from .channels import Channel, channel_from_url
from .channels.base import TURN

__all__ = ["DEFAULT_RETRY", "NotificationSystem"]

logger = logging.getLogger("pepperpy.event.notifications")

H = TypeVar("H", bound=Callable[..., Any])
ErrorCallback = Callable[[NotificationDeadLetter], Any]

#: three tries, waiting 0.5 s then 0.5-1 s (jittered): rides out a blip, never stalls a handler
DEFAULT_RETRY = RetryPolicy.exponential(max_attempts=3, base_delay=0.5, max_delay=5.0)
DEAD_LETTER_LIMIT = 1000
#: seconds ``close()`` gives, by default, for deliveries under way before closing channels
CLOSE_GRACE = 10.0
#: seconds ``close()`` then gives the tries it cut off to record their failure
CUT_WIND_UP = 1.0
OUTBOX_LIMIT = 10_000
_GROUP = re.compile(r"^[A-Za-z0-9_-]+$")

#: the event (and handler name) being handled, so ``notify`` can derive idempotency keys
_handling: contextvars.ContextVar[tuple[Event, str] | None] = contextvars.ContextVar(
    "pepperpy_event_notification_handling", default=None
)


class _Outbox(Channel):
    """Stands in for a channel added without a transport: records and logs messages."""

    def __init__(self, outbox: list[Notification]) -> None:
        self._outbox = outbox
        self._warned: set[str] = set()

    async def send(self, notification: Notification) -> None:
        name = notification.channel
        if name not in self._warned:
            self._warned.add(name)
            logger.warning(
                "notification channel %r has no transport; its messages go to "
                "notifications.outbox (add_channel(%r, URL_OR_CHANNEL) to deliver them)",
                name,
                name,
            )
        self._outbox.append(notification)
        if len(self._outbox) > OUTBOX_LIMIT:
            del self._outbox[0]
        logger.info(
            "outbox [%s] to %s: %s", name, notification.recipient or "-", notification.subject
        )


class _Try:
    """One try of one delivery: its rate-limit turn, and the scope ``close()`` cuts off.

    ``waiting`` is True while the try waits for a rate-limit slot (nothing sent yet);
    ``refused`` is set when the system was closed before the try could write; ``cut``
    says what ``close()`` cut off (``"waiting"`` or ``"sending"``), if it did.
    """

    __slots__ = (
        "asked",
        "closed",
        "cut",
        "granted",
        "limit",
        "refused",
        "scope",
        "started",
        "waiting",
    )

    def __init__(self, limit: RateLimit | None, closed: Callable[[], ClosedError | None]) -> None:
        self.limit = limit
        self.closed = closed
        self.scope = asyncio.timeout(None)
        self.waiting = False
        self.started = False  # got a start slot
        self.asked = False  # asked for its turn to write
        self.granted = False  # got a write slot
        self.refused: ClosedError | None = None
        self.cut: str | None = None

    async def wait_start(self) -> None:
        if self.limit is not None:
            self.waiting = True
            try:
                await self.limit.wait_start()
                self.started = True
            finally:
                self.waiting = False

    def end(self) -> None:
        """The try is over: a start that led to no write (no connection) is given back."""
        if self.limit is not None and self.started and not self.granted:
            self.limit.release_start()

    async def take_turn(self) -> None:
        """Wait for the write slot (once per try); nothing is written once the system closed."""
        if self.asked:
            return
        self.asked = True
        self.refused = self.closed()
        if self.refused is not None:
            raise self.refused
        if self.limit is not None:
            self.waiting = True  # close() ends this wait at once
            try:
                await self.limit.wait_write()
            finally:
                self.waiting = False
        self.granted = True

    def cut_off(self) -> None:
        """End the try now (on its own loop): its scope expires, cancelling what it awaits."""
        if self.cut is None and not self.scope.expired():
            self.cut = "waiting" if self.waiting else "sending"
            with contextlib.suppress(RuntimeError):  # the try is just leaving its scope
                self.scope.reschedule(asyncio.get_running_loop().time())


@dataclass(eq=False, slots=True)
class _Call:
    """A ``notify`` call under way, on ``loop``: ``done`` when it returns, ``stop`` set by
    ``close()`` to end its retry waits, ``tries`` the tries it is making right now."""

    loop: asyncio.AbstractEventLoop
    done: asyncio.Future[None]
    stop: asyncio.Future[None]
    tries: set[_Try] = field(default_factory=set)

    def halt(self) -> None:
        """No more tries (run on ``loop``): retry and rate-limit waits end at once."""
        _set(self.stop)
        for attempt in list(self.tries):
            if attempt.waiting:
                attempt.cut_off()

    def cut_off(self) -> None:
        """End the tries under way (run on ``loop``), sending or not."""
        for attempt in list(self.tries):
            attempt.cut_off()


@dataclass(slots=True)
class _Route:
    name: str
    channel: Channel
    kind: str
    rate_limit: RateLimit | None
    retry_policy: RetryPolicy | None


class NotificationSystem:
    """Subscribes to events and delivers templated notifications through channels.

    ``template_dir`` holds template files (see :class:`TemplateLibrary` for the naming
    convention). ``retry_policy`` governs every channel unless ``add_channel`` gives
    one. ``default_channel`` (a URL or :class:`Channel`) serves channel names added
    without one; without it such names record into :attr:`outbox`. ``idempotency``
    remembers delivered keys: in this process (the default, the ``idempotency_size``
    most recent) or shared by every process (``"redis://..."``, an
    :class:`IdempotencyStore`).

    Every ``notify`` delivers to its channels concurrently; one channel's failure never
    blocks another. Failed deliveries are retried (unless the failure is permanent: a
    bad address, a broken template, an SMTP 5xx or HTTP 4xx answer), then kept in
    :attr:`dead_letters` with the reason, logged, and passed to ``on_error`` callbacks.

    :meth:`close` (or leaving ``async with``) ends the system: no try starts after it,
    deliveries waiting to retry or for a rate limit stop waiting and are dead-lettered,
    tries under way get up to ``grace`` seconds to finish and are then cut off, then
    the channels close. ``notify`` and ``emit`` on a closed system raise
    :class:`~pepperpy.event.ClosedError`.
    """

    def __init__(
        self,
        *,
        template_dir: str | os.PathLike[str] | None = None,
        retry_policy: RetryPolicy = DEFAULT_RETRY,
        default_channel: str | Channel | None = None,
        builtin_templates: bool = True,
        idempotency: IdempotencyStore | str | None = None,
        idempotency_size: int = 10_000,
    ) -> None:
        if not isinstance(retry_policy, RetryPolicy):
            raise TypeError(f"retry_policy must be a RetryPolicy, got {retry_policy!r}")
        if idempotency_size < 1:
            raise ValueError(f"idempotency_size must be >= 1, got {idempotency_size!r}")
        self.templates = TemplateLibrary(template_dir, builtins=builtin_templates)
        self.retry_policy = retry_policy
        self.outbox: list[Notification] = []
        self.dead_letters: deque[NotificationDeadLetter] = deque(maxlen=DEAD_LETTER_LIMIT)
        self._default = _as_channel(default_channel) if default_channel is not None else None
        if isinstance(default_channel, str):  # made here, so closed by close()
            owned_by(self._default, "NotificationSystem")
        self._outbox_channel = _Outbox(self.outbox)
        self._routes: dict[str, _Route] = {}
        self._manager = EventManager()
        self._registrations: list[tuple[str, Callable[[Event], Any]]] = []
        self._attached: list[tuple[EventManager | EventBus, str | None]] = []
        self._error_callbacks: list[tuple[ErrorCallback, bool]] = []
        self.idempotency = store_from(idempotency, idempotency_size)
        if not isinstance(idempotency, IdempotencyStore):  # made here, so closed by close()
            owned_by(self.idempotency, "NotificationSystem")
        self._closed = False
        self._grace = CLOSE_GRACE
        self._calls: set[_Call] = set()
        self._calls_lock = threading.Lock()  # loops in several threads may notify

    # -- channels and templates ---------------------------------------------------------

    def add_channel(
        self,
        name: str,
        channel: str | Channel | None = None,
        *,
        kind: str | None = None,
        rate_limit: RateLimit | str | float | None = None,
        retry_policy: RetryPolicy | None = None,
    ) -> Channel:
        """Add (or replace) the channel called ``name``; returns the channel object.

        ``channel`` is a :class:`Channel` or a URL (``smtp://``, ``https://``,
        ``console://``, ``memory://`` or an apprise URL); ``None`` uses the default
        channel, else the :attr:`outbox`. ``kind`` (default: the channel's own kind,
        else ``name``) picks the recipient field and template variants: ``email``,
        ``sms`` or ``push``. ``rate_limit`` paces this channel (``"10/s"``).
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"channel name must be a non-empty str, got {name!r}")
        if channel is None:
            resolved = self._default or self._outbox_channel
        else:
            resolved = _as_channel(channel, kind=kind)
        if resolved is not channel:  # made from a URL here, so closed by close()
            owned_by(resolved, "NotificationSystem")
        if retry_policy is not None and not isinstance(retry_policy, RetryPolicy):
            raise TypeError(f"retry_policy must be a RetryPolicy, got {retry_policy!r}")
        limiter = RateLimit.parse(rate_limit) if rate_limit is not None else None
        self._routes[name] = _Route(
            name, resolved, kind or resolved.kind or name, limiter, retry_policy
        )
        return resolved

    @property
    def channels(self) -> dict[str, Channel]:
        """The channels by name (a copy)."""
        return {name: route.channel for name, route in self._routes.items()}

    def add_template(
        self,
        name: str,
        body: str | None = None,
        *,
        subject: str | None = None,
        channel: str | None = None,
        html: str | None = None,
    ) -> None:
        """Add a Jinja2 template; with ``channel`` it is that channel's variant.

        A channel-specific variant (by channel name or kind) wins over the generic one.
        ``html`` adds an HTML body (autoescaped) that email sends as an alternative
        part. Syntax errors raise :class:`TemplateError` here, not at send time.
        """
        self.templates.add(name, body, subject=subject, channel=channel, html=html)

    def render(self, template: str, channel: str, /, **context: Any) -> Rendered:
        """Render ``template`` as channel ``channel`` would send it (for previews).

        Raises :class:`TemplateNotFound` or :class:`TemplateError` directly.
        """
        route = self._route(channel)
        to = context.pop("to", None)
        recipient = resolve_recipient(route.name, route.kind, to, context, required=False)
        values = {"channel": route.name, "recipient": recipient, **context}
        return self.templates.render(template, (route.name, route.kind), values)

    # -- subscribing ----------------------------------------------------------------------

    @overload
    def on(self, event_type: str, handler: None = None) -> Callable[[H], H]: ...

    @overload
    def on(self, event_type: str, handler: H) -> H: ...

    def on(self, event_type: str, handler: H | None = None) -> H | Callable[[H], H]:
        """Run ``handler`` for events matching ``event_type`` (a type or pattern).

        Events come from :meth:`emit` and from every manager or bus this system is
        :meth:`attach`-ed to. Returns the handler unchanged.
        """
        parse_pattern(event_type)
        if handler is None:

            def decorator(func: H) -> H:
                self._register(event_type, func)
                return func

            return decorator
        self._register(event_type, handler)
        return handler

    def _register(self, pattern: str, handler: Callable[..., Any]) -> None:
        if not callable(handler):
            raise TypeError(f"handler must be callable, got {handler!r}")
        wrapped = _in_context(handler)
        self._registrations.append((pattern, wrapped))
        self._manager.on(pattern, wrapped)
        for target, group in self._attached:
            _subscribe(target, group, pattern, wrapped)

    def attach(
        self, target: EventManager | EventBus, *, group: str | None = "notifications"
    ) -> None:
        """Also handle the events of ``target`` (an :class:`EventManager` or :class:`EventBus`).

        On a bus each handler joins its own consumer group named from ``group`` and the
        handler, so processes running the same code share the work and each event is
        notified once; ``group=None`` makes every process handle every event.
        """
        if not isinstance(target, EventManager | EventBus):
            raise TypeError(f"attach() takes an EventManager or EventBus, got {target!r}")
        if group is not None and not _GROUP.match(group):
            raise ValueError(f"group must match [A-Za-z0-9_-]+, got {group!r}")
        if any(existing is target for existing, _ in self._attached):
            return
        self._attached.append((target, group))
        for pattern, wrapped in self._registrations:
            _subscribe(target, group, pattern, wrapped)

    async def emit(
        self, event_type: str | Event, data: Any = None, metadata: Mapping[str, Any] | None = None
    ) -> Event:
        """Dispatch an event to this system's handlers; returns once they have finished."""
        self._check_open()
        return await self._manager.emit(event_type, data, metadata)

    @overload
    def on_error(self, callback: None = None) -> Callable[[H], H]: ...

    @overload
    def on_error(self, callback: H) -> H: ...

    def on_error(self, callback: H | None = None) -> H | Callable[[H], H]:
        """Register a sync or async callback receiving each :class:`NotificationDeadLetter`."""
        if callback is None:

            def decorator(func: H) -> H:
                self._error_callbacks.append((func, is_async_callable(func)))
                return func

            return decorator
        if not callable(callback):
            raise TypeError(f"error callback must be callable, got {callback!r}")
        self._error_callbacks.append((callback, is_async_callable(callback)))
        return callback

    # -- notifying ------------------------------------------------------------------------

    async def notify(
        self,
        channels: Sequence[str] | str | None = None,
        template: str | None = None,
        *,
        to: str | Mapping[str, str] | None = None,
        subject: str | None = None,
        body: str | None = None,
        idempotency_key: str | None = None,
        **context: Any,
    ) -> NotificationResult:
        """Render and deliver a notification on each of ``channels`` (default: all).

        With ``template`` the named template renders per channel with ``context``
        (``user=...``, ...); without it, ``body`` (and ``subject``) are sent as they
        are. ``to`` overrides the recipient (one address, or a mapping by channel).
        ``idempotency_key`` makes a repeated call with the same key a no-op per channel
        and recipient; inside an ``on`` handler a key is derived from the event and the
        rendered message, so a redelivered or retried event does not notify twice while
        different messages sent for one event all go out.
        """
        self._check_open()
        routes = [self._route(name) for name in self._channel_names(channels)]
        if template is not None:
            if body is not None or subject is not None:
                raise TypeError("pass either template= or body=/subject=, not both")
            self.templates.check(template)
        elif body is None:
            raise TypeError("notify() needs template= or body=")
        base_key = _base_key(idempotency_key, template)
        call = self._begin()
        try:
            jobs = [
                self._deliver(call, r, template, to, subject, body, base_key, context)
                for r in routes
            ]
            if len(jobs) == 1:
                outcome = [await jobs[0]]
            else:
                outcome = await asyncio.gather(*jobs)
        finally:
            self._end(call)
        return NotificationResult({result.channel: result for result in outcome})

    def _begin(self) -> _Call:
        loop = asyncio.get_running_loop()
        call = _Call(loop, loop.create_future(), loop.create_future())
        with self._calls_lock:
            self._check_open()  # again: close() may have run since the first check
            self._calls.add(call)
        return call

    def _end(self, call: _Call) -> None:
        with self._calls_lock:
            self._calls.discard(call)
        if not call.done.done():
            call.done.set_result(None)

    def _channel_names(self, channels: Sequence[str] | str | None) -> list[str]:
        if channels is None:
            if not self._routes:
                raise ConfigurationError("no channels added; call add_channel() first")
            return list(self._routes)
        names = [channels] if isinstance(channels, str) else list(channels)
        if not names:
            raise ValueError("channels must name at least one channel")
        return list(dict.fromkeys(names))

    def _route(self, name: str) -> _Route:
        route = self._routes.get(name)
        if route is None:
            known = ", ".join(repr(n) for n in self._routes) or "none"
            raise ConfigurationError(f"unknown notification channel {name!r} (added: {known})")
        return route

    async def _deliver(
        self,
        call: _Call,
        route: _Route,
        template: str | None,
        to: str | Mapping[str, str] | None,
        subject: str | None,
        body: str | None,
        base_key: _KeyBase | None,
        context: Mapping[str, Any],
    ) -> ChannelResult:
        try:
            recipient = resolve_recipient(
                route.name, route.kind, to, context, required=route.channel.needs_recipient
            )
            if template is not None:
                values = {"channel": route.name, "recipient": recipient, **context}
                rendered = self.templates.render(template, (route.name, route.kind), values)
            else:  # the subject flattened as templates do: one header line
                flat = one_line(subject) if subject is not None else None
                rendered = Rendered(subject=flat, body=body or "", html=None)
        except NotificationError as exc:  # no address, template missing or broken
            return await self._fail(route, exc, 0, None, template)
        key = _delivery_key(base_key, route.name, recipient, rendered)
        notification = Notification(
            channel=route.name,
            recipient=recipient,
            subject=rendered.subject,
            body=rendered.body,
            html=rendered.html,
            template=template,
            key=key,
        )
        if key is None:
            return await self._send(call, route, notification)
        store = self.idempotency
        try:
            while (state := await _claim(store, key)) == "busy":
                await store.wait(key)
        except NotificationError as exc:
            return await self._fail(route, exc, 0, notification, template)
        if state == "done":
            return ChannelResult(route.name, "duplicate", notification, None, 0)
        keeper = asyncio.ensure_future(_hold(store, key)) if isfinite(store.lease) else None
        try:
            result = await self._send(call, route, notification)
        except BaseException:
            # the claim is given up even if cancelled again meanwhile (a claim left
            # pending blocks every retry until its lease ends: for ever in memory)
            await settled(_record(store, key, keeper, delivered=False))
            raise
        # recorded even if the caller is cancelled now: the message went out (a pending
        # claim would make the retry wait for the lease, then send it again)
        await settled(_record(store, key, keeper, delivered=result.ok))
        return result

    async def _send(self, call: _Call, route: _Route, notification: Notification) -> ChannelResult:
        policy = route.retry_policy or self.retry_policy
        channel = route.channel

        async def fail(error: Exception, attempts: int) -> ChannelResult:
            return await self._fail(route, error, attempts, notification, notification.template)

        attempt = 0
        while True:
            attempt += 1
            closed = self._closed_before(route, attempt)
            if closed is not None:  # no try starts after close(), not even a first one
                return await fail(closed, attempt - 1)
            current = _Try(route.rate_limit, functools.partial(self._closed_before, route, attempt))
            turn = TURN.set(current.take_turn)
            try:
                async with current.scope:
                    call.tries.add(current)
                    try:
                        if route.rate_limit is not None:
                            await current.wait_start()
                            if not channel.paces_writes:
                                await current.take_turn()
                        await channel.send(notification)
                    finally:
                        call.tries.discard(current)
                        current.end()
                return ChannelResult(route.name, "sent", notification, None, attempt)
            except Exception as exc:
                raised = exc
                error = _as_notification_error(route.name, exc)
            finally:
                TURN.reset(turn)
                current.closed = _over  # see _over
            if current.refused is not None:  # closed before the try could write
                return await fail(current.refused, attempt - 1)
            if current.scope.expired():  # close() cut the try off
                if current.cut == "waiting":  # ... while it waited for a rate-limit slot
                    return await fail(self._closed_before(route, attempt) or error, attempt - 1)
                cut = ClosedError(
                    f"the notification system was closed and try {attempt} on channel "
                    f"{route.name!r} was still under way after the {self._grace:g}s grace; "
                    "it was cut off (the receiver may have got the message)"
                )
                cut.__cause__ = raised
                return await fail(cut, attempt)
            retry = (
                not self._closed  # a try that failed after close() is not retried
                and channel.is_retryable(error)
                and any(policy.should_retry(cause, attempt) for cause in _causes(error))
            )
            if not retry:
                return await fail(error, attempt)
            logger.info(
                "channel %r failed (try %d of %d), retrying: %s",
                route.name,
                attempt,
                policy.max_attempts,
                error,
            )
            delay = policy.delay(attempt)
            if delay > 0:  # close() ends the wait at once (and the next round stops)
                await asyncio.wait((call.stop,), timeout=delay)

    def _closed_before(self, route: _Route, attempt: int) -> ClosedError | None:
        """The error of try ``attempt`` when the system closed before it could send."""
        if not self._closed:
            return None
        return ClosedError(
            f"the notification system was closed before try {attempt} on channel "
            f"{route.name!r}; not sent"
        )

    async def _fail(
        self,
        route: _Route,
        error: Exception,
        attempts: int,
        notification: Notification | None,
        template: str | None,
    ) -> ChannelResult:
        letter = NotificationDeadLetter(
            channel=route.name,
            reason=f"{type(error).__name__}: {error}",
            exception=error,
            attempts=attempts,
            notification=notification,
            template=template,
        )
        self.dead_letters.append(letter)
        logger.error(
            "notification on channel %r failed after %d attempt(s): %s",
            route.name,
            attempts,
            letter.reason,
            exc_info=error if attempts else None,
        )
        for callback, is_async in list(self._error_callbacks):
            try:
                outcome = callback(letter)
                if is_async or inspect.isawaitable(outcome):
                    await outcome
            except Exception:
                logger.exception("notification on_error callback %r failed", callback)
        return ChannelResult(route.name, "failed", notification, error, attempts)

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError("the notification system is closed")

    async def _detach(self, grace: float) -> None:
        """Leave every manager and bus ``attach`` joined (their handlers get nothing more)."""
        detaching = [
            _unsubscribe(target, group, pattern, wrapped)
            for target, group in self._attached
            for pattern, wrapped in self._registrations
        ]
        self._attached.clear()
        if detaching:
            try:
                async with asyncio.timeout(grace):
                    await asyncio.gather(*detaching)
            except TimeoutError:
                logger.warning("close(): leaving the attached buses took over %ss", grace)

    async def close(self, *, grace: float = CLOSE_GRACE) -> None:
        """Stop retries, let tries under way finish (or cut them off), then release every
        channel.

        From here on no try starts: a delivery waiting to retry, or for its rate limit's
        slot, is dead-lettered with a :class:`~pepperpy.event.ClosedError` at once,
        without sending. ``notify`` calls on this event loop whose try is under way are
        awaited for up to ``grace`` seconds; tries still running then are cut off (they
        fail with a ``ClosedError``, not retried) and get up to a second to record that.
        Then every channel object is closed (once). Calls on other event loops are told
        to stop but not awaited. Idempotent.
        """
        if isinstance(grace, bool) or not isinstance(grace, int | float) or not 0 <= grace < inf:
            raise ValueError(f"grace must be a finite number of seconds >= 0, got {grace!r}")
        with self._calls_lock:
            if self._closed:
                return
            self._closed = True
            self._grace = grace
            calls = list(self._calls)
        here = asyncio.get_running_loop()
        for call in calls:
            if call.loop is here:
                call.halt()
            else:
                try:
                    call.loop.call_soon_threadsafe(call.halt)
                except RuntimeError:  # that loop is closed: nothing runs there any more
                    pass
        mine = {call.done: call for call in calls if call.loop is here}
        if mine:
            _, running = await asyncio.wait(mine, timeout=grace)
            if running:
                logger.warning(
                    "close(): %d notify call(s) still sending after %ss; cutting them off",
                    len(running),
                    grace,
                )
                for done in running:
                    mine[done].cut_off()
                await asyncio.wait(running, timeout=CUT_WIND_UP)  # they record the failure
        await self._detach(grace)
        await self.idempotency.close()
        seen: set[int] = set()
        for route in self._routes.values():
            if id(route.channel) not in seen:
                seen.add(id(route.channel))
                try:
                    await route.channel.close()
                except Exception:
                    logger.exception("closing channel %r failed", route.name)

    async def __aenter__(self) -> NotificationSystem:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


def _over() -> ClosedError | None:
    """What an ended try asks instead of the system whether it closed.

    The contexts copied while the try ran (timers of the channel's timeouts, which the
    loop keeps until they would have fired, even cancelled) still hold its turn, so a
    try that ended must not hold the system: a system dropped without ``close()`` could
    not be collected until then.
    """
    return ClosedError("this notification try is over")


def _set(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def _hold(store: IdempotencyStore, key: str) -> None:
    """Renew the claim on ``key`` while its delivery is under way (cancelled when it ends),
    so a live holder keeps it however long rate limits and retries make it wait."""
    every = store.lease / 3
    while True:
        await asyncio.sleep(every)
        try:
            held = await store.renew(key)
        except Exception as exc:  # the store is down: keep trying while the lease lasts
            logger.warning("could not renew the idempotency claim on %r: %s", key, exc)
            continue
        if not held:
            logger.warning(
                "the idempotency claim on %r expired before it could be renewed; another "
                "process may deliver it too",
                key,
            )
            return


async def _claim(store: IdempotencyStore, key: str) -> Claim:
    """``store.claim(key)``, given back if the caller is cancelled while it runs.

    The claim runs to its end (a claim that reached the store unseen would stay pending
    until its lease ends, for ever in memory, and block every retry); if it was taken
    for a caller cancelled meanwhile, it is released before the cancellation goes on.
    """
    taken: list[Claim] = []

    async def claim() -> Claim:
        taken.append(await store.claim(key))
        return taken[0]

    try:
        return await settled(claim())
    except asyncio.CancelledError:
        if taken == ["claimed"]:
            await settled(_record(store, key, None, delivered=False))
        raise


async def _record(
    store: IdempotencyStore, key: str, keeper: asyncio.Future[None] | None, *, delivered: bool
) -> None:
    """End a delivery's claim: stop renewing it, then complete or release it."""
    await _stop(keeper)
    try:
        if delivered:
            await store.complete(key)
        else:
            await store.release(key)
    except NotificationError:
        logger.exception("could not record idempotency key %r", key)


async def _stop(task: asyncio.Future[None] | None) -> None:
    if task is not None:
        task.cancel()
        await asyncio.wait((task,))


def _causes(error: BaseException) -> list[BaseException]:
    """``error`` and its chain of causes (what ``retry_on`` is matched against)."""
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in chain and len(chain) < 16:
        chain.append(current)
        current = current.__cause__
    return chain


def _as_channel(channel: str | Channel, *, kind: str | None = None) -> Channel:
    if isinstance(channel, Channel):
        return channel
    if isinstance(channel, str):
        return channel_from_url(channel, kind=kind)
    raise TypeError(f"a channel is a Channel or a URL string, got {channel!r}")


def _as_notification_error(name: str, exc: Exception) -> Exception:
    """Channel errors as library errors: foreign exceptions are wrapped, ``from`` them."""
    if isinstance(exc, EventError):
        return exc
    error = NotificationError(f"channel {name!r} failed: {type(exc).__name__}: {exc}")
    error.__cause__ = exc
    return error


@dataclass(frozen=True, slots=True)
class _KeyBase:
    """What a ``notify`` call's deliveries are keyed by, before channel and recipient.

    ``by_content`` (keys derived from the event being handled) adds the rendered
    message, so one handler sending different messages sends each of them, while the
    same event handled again renders the same messages and sends none twice.
    """

    text: str
    by_content: bool


def _base_key(explicit: str | None, template: str | None) -> _KeyBase | None:
    if explicit is not None:
        if not isinstance(explicit, str) or not explicit:
            raise ValueError(f"idempotency_key must be a non-empty str, got {explicit!r}")
        return _KeyBase(f"key:{explicit}", by_content=False)
    handling = _handling.get()
    if handling is None:
        return None
    event, handler = handling
    what = f"template:{template}" if template is not None else "text"
    return _KeyBase(f"event:{event.id}|{handler}|{what}", by_content=True)


def _delivery_key(
    base: _KeyBase | None, channel: str, recipient: str | None, rendered: Rendered
) -> str | None:
    """The key of one delivery: a digest, so no address or code path reaches Redis or headers."""
    if base is None:
        return None
    raw = f"{base.text}|{channel}|{recipient or ''}"
    if base.by_content:
        content = json.dumps([rendered.subject, rendered.body, rendered.html])
        raw += "|" + hashlib.sha256(content.encode()).hexdigest()
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


def _in_context(handler: Callable[..., Any]) -> Callable[[Event], Any]:
    """Wrap a handler so ``notify`` calls inside it know which event they serve."""
    is_async = is_async_callable(handler)
    name = f"{getattr(handler, '__module__', '')}.{getattr(handler, '__qualname__', handler)}"

    async def handle(event: Event) -> None:
        token = _handling.set((event, name))
        try:
            if is_async:
                await handler(event)
            else:
                outcome = handler(event)
                if inspect.isawaitable(outcome):
                    await outcome
        finally:
            _handling.reset(token)

    functools.update_wrapper(handle, handler)
    return handle


def _bus_group(group: str | None, pattern: str, handler: Callable[..., Any]) -> str | None:
    """The consumer group of ``handler`` on a bus: one per handler and pattern."""
    if group is None:
        return None
    name = f"{handler.__module__}.{handler.__qualname__}|{pattern}"
    return f"{group}-{hashlib.sha1(name.encode(), usedforsecurity=False).hexdigest()[:12]}"


def _subscribe(
    target: EventManager | EventBus, group: str | None, pattern: str, handler: Callable[..., Any]
) -> None:
    if isinstance(target, EventManager):
        target.on(pattern, handler)
        return
    target.subscribe(pattern, group=_bus_group(group, pattern, handler))(handler)


async def _unsubscribe(
    target: EventManager | EventBus, group: str | None, pattern: str, handler: Callable[..., Any]
) -> None:
    if isinstance(target, EventManager):
        await target.off(pattern, handler)
        return
    with contextlib.suppress(ClosedError):  # a bus closed, or started on an ended loop
        await target.unsubscribe(pattern, handler, group=_bus_group(group, pattern, handler))
