"""NotificationSystem: turn events into messages on email, webhooks, push, SMS and more."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import re
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from math import isfinite
from typing import Any, TypeVar, overload

from .._bus import EventBus
from .._closing import AsyncClosing
from .._errors import ClosedError, ConfigurationError, NotificationError, TemplateError
from .._event import Event
from .._handlers import check_handler, is_async_callable
from .._manager import EventManager
from .._options import check_count
from .._patterns import parse_pattern, plain_name
from .._removal import check_removal, remove_last
from .._retry import RetryPolicy
from .._seconds import check_seconds
from . import _sandbox
from ._claims import (
    KeyBase,
    claim_key,
    delivery_key,
    end_claim,
    hold_claim,
    key_base,
    settled_soon,
)
from ._delivery import CLOSE_GRACE, Call, Deliveries, Failure, Route
from ._handler_failures import HandlerFailures
from ._idempotency import IdempotencyStore, store_from
from ._loopclients import owned_by
from ._models import (
    ChannelResult,
    Notification,
    NotificationResult,
    one_line,
)
from ._outbox import Outbox, as_channel
from ._ratelimit import RateLimit
from ._recipients import resolve_recipient
from ._subscriptions import Subscriptions
from ._templates import Rendered, TemplateLibrary
from .channels import Channel
from .channels.base import check_kind

__all__ = ["DEFAULT_RETRY", "NotificationSystem"]

logger = logging.getLogger("pepperpy.event.notifications")

H = TypeVar("H", bound=Callable[..., Any])

#: three tries, waiting 0.5 s then 0.5-1 s (jittered): rides out a blip, never stalls a handler
DEFAULT_RETRY = RetryPolicy.exponential(max_attempts=3, base_delay=0.5, max_delay=5.0)
_GROUP = re.compile(r"^[A-Za-z0-9_-]+$")


class NotificationSystem(AsyncClosing):
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
    :attr:`dead_letters` with the reason, logged, and passed to ``on_error`` callbacks,
    as :class:`NotificationDeadLetter` records. An ``on`` handler that raises when
    :meth:`emit` runs it is retried per ``handler_retry_policy`` (default: none, as on
    :class:`~pepperpy.event.EventManager`), then goes the same way as a
    :class:`~pepperpy.event.DeadLetter`.

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
        handler_retry_policy: RetryPolicy = RetryPolicy.NONE,
    ) -> None:
        if not isinstance(retry_policy, RetryPolicy):
            raise TypeError(f"retry_policy must be a RetryPolicy, got {retry_policy!r}")
        if not isinstance(handler_retry_policy, RetryPolicy):
            raise TypeError(
                f"handler_retry_policy must be a RetryPolicy, got {handler_retry_policy!r}"
            )
        check_count(idempotency_size, "idempotency_size")
        if not isinstance(builtin_templates, bool):  # "no" or "false" left them on
            raise TypeError(f"builtin_templates must be True or False, got {builtin_templates!r}")
        self.templates = TemplateLibrary(template_dir, builtins=builtin_templates)
        self.retry_policy = retry_policy
        self.handler_retry_policy = handler_retry_policy
        self.outbox: list[Notification] = []
        self._deliveries = Deliveries()
        self._default = as_channel(default_channel) if default_channel is not None else None
        if isinstance(default_channel, str):  # made here, so closed by close()
            owned_by(self._default, "NotificationSystem")
        self._outbox_channel = Outbox(self.outbox)
        self._routes: dict[str, Route] = {}
        # emit() runs the handlers here; their failures are this system's
        self._failures = HandlerFailures(self._deliveries)
        self._manager = EventManager(retry_policy=self._failures.policy(handler_retry_policy))
        self._manager.dead_letters = deque(maxlen=0)  # kept in self.dead_letters instead
        self._manager.on_error(self._failures.failed)
        self._subscriptions = Subscriptions(self._manager, self._failures)
        self.idempotency = store_from(idempotency, idempotency_size)
        if not isinstance(idempotency, IdempotencyStore):  # made here, so closed by close()
            owned_by(self.idempotency, "NotificationSystem")

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
            message = f"channel name must be a non-empty str, got {name!r}"
            raise TypeError(message) if not isinstance(name, str) else ValueError(message)
        if retry_policy is not None and not isinstance(retry_policy, RetryPolicy):
            raise TypeError(f"retry_policy must be a RetryPolicy, got {retry_policy!r}")
        _check_kind(kind, name)
        try:  # before a channel is made from a URL, which would be left unused
            limiter = RateLimit.parse(rate_limit) if rate_limit is not None else None
        except (ConfigurationError, TypeError) as exc:  # a bad rate, or one of a wrong type
            raise type(exc)(f"rate_limit of channel {name!r}: {exc}") from None
        if channel is None:
            resolved = self._default or self._outbox_channel
        else:
            resolved = as_channel(channel, kind=kind)
        if resolved is not channel:  # made from a URL here, so closed by close()
            owned_by(resolved, "NotificationSystem")
        self._routes[name] = Route(
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
        :meth:`attach`-ed to. Returns the handler unchanged. When :meth:`emit` runs it and
        it raises, it is retried per ``handler_retry_policy``, then becomes a
        :class:`~pepperpy.event.DeadLetter` in :attr:`dead_letters`, passed to the
        ``on_error`` callbacks; a manager or bus it is attached to runs it under its own
        retry policy and dead letters.
        """
        event_type = plain_name(event_type)  # an enum member: the str it holds
        parse_pattern(event_type)
        if handler is None:

            def decorator(func: H) -> H:
                self._subscriptions.register(event_type, func)
                return func

            return decorator
        self._subscriptions.register(event_type, handler)
        return handler

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
        if self._subscriptions.is_attached(target):
            return
        if target._closed:  # refused before it is kept: nothing would ever come from it
            kind = type(target).__name__
            raise ClosedError(f"attach(): the {kind} is closed, no event would come from it")
        self._subscriptions.attach(target, group)

    async def off(self, event_type: str, handler: Callable[..., Any]) -> bool:
        """Remove ``handler``'s registrations under exactly ``event_type``; True if any was.

        Removed from :meth:`emit` and from every manager and bus this system is attached
        to, so ``off`` is async like ``manager.off`` and ``bus.unsubscribe``: it returns
        once they have removed it (a bus waits for the handler's deliveries in progress,
        except the one ``off`` is called from; handlers :meth:`emit` is running are not
        waited for, as ``manager.off`` does not wait). A second call for the same
        registration made meanwhile returns False at once, as a second
        ``bus.unsubscribe`` does: the call that returned True is the one to await. Safe
        from inside a handler: the event being handled keeps its handlers, the next one
        does not reach ``handler``. An ``event_type`` that is not a str, or a ``handler``
        that is not callable, is a ``TypeError``.
        """
        check_removal("off", event_type, handler, pattern_name="event_type")
        return await self._subscriptions.off(event_type, handler)

    def handlers(self, event_type: str) -> list[Callable[..., Any]]:
        """The handlers an event of ``event_type`` reaches through :meth:`emit`, in
        call order (the functions registered, not their wrappers)."""
        return self._subscriptions.handlers(event_type)

    async def emit(
        self, event_type: str | Event, data: Any = None, metadata: Mapping[str, Any] | None = None
    ) -> Event:
        """Dispatch an event to this system's handlers; returns once they have finished."""
        self._deliveries.check_open()
        return await self._manager.emit(event_type, data, metadata)

    @overload
    def on_error(self, callback: None = None) -> Callable[[H], H]: ...

    @overload
    def on_error(self, callback: H) -> H: ...

    def on_error(self, callback: H | None = None) -> H | Callable[[H], H]:
        """Register a sync or async callback receiving each failure :attr:`dead_letters`
        keeps: a :class:`NotificationDeadLetter` (a delivery) or a
        :class:`~pepperpy.event.DeadLetter` (an ``on`` handler run by :meth:`emit`)."""
        if callback is None:

            def decorator(func: H) -> H:
                check_handler(func, "error callback")
                self._deliveries.error_callbacks.append((func, is_async_callable(func)))
                return func

            return decorator
        check_handler(callback, "error callback")
        self._deliveries.error_callbacks.append((callback, is_async_callable(callback)))
        return callback

    def off_error(self, callback: Callable[..., Any]) -> bool:
        """Undo one :meth:`on_error` of ``callback``: True if it was registered.

        As on :meth:`EventManager.off_error <pepperpy.event.EventManager.off_error>`:
        one registration, the most recent first; callbacks compare with ``==``; from
        inside a callback, the failure being reported still reaches every callback
        registered when its report began, the next one does not reach ``callback``.
        """
        return remove_last("off_error", self._deliveries.error_callbacks, callback, _first)

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
        self._deliveries.check_open()
        _check_notify_arguments(to, subject, body)
        routes = [self._route(name) for name in self._channel_names(channels)]
        if template is not None:
            if body is not None or subject is not None:
                raise TypeError("pass either template= or body=/subject=, not both")
            self.templates.check(template)
        elif body is None:
            raise TypeError("notify() needs template= or body=")
        base_key = key_base(idempotency_key, template)
        call = self._deliveries.begin()
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
            self._deliveries.end(call)
        return NotificationResult({result.channel: result for result in outcome})

    def _channel_names(self, channels: Sequence[str] | str | None) -> list[str]:
        if channels is None:
            if not self._routes:
                raise ConfigurationError("no channels added; call add_channel() first")
            return list(self._routes)
        names = [channels] if isinstance(channels, str) else list(channels)
        if not names:
            raise ValueError("channels must name at least one channel")
        return list(dict.fromkeys(names))

    def _route(self, name: str) -> Route:
        route = self._routes.get(name)
        if route is None:
            known = ", ".join(repr(n) for n in self._routes) or "none"
            raise ConfigurationError(f"unknown notification channel {name!r} (added: {known})")
        return route

    async def _deliver(
        self,
        call: Call,
        route: Route,
        template: str | None,
        to: str | Mapping[str, str] | None,
        subject: str | None,
        body: str | None,
        base_key: KeyBase | None,
        context: Mapping[str, Any],
    ) -> ChannelResult:
        try:
            recipient = resolve_recipient(
                route.name, route.kind, to, context, required=route.channel.needs_recipient
            )
            if template is not None:
                values = {"channel": route.name, "recipient": recipient, **context}
                rendered = await _render_off_loop(self.templates, template, route, values)
            else:  # the subject flattened as templates do: one header line
                flat = one_line(subject) if subject is not None else None
                rendered = Rendered(subject=flat, body=body or "", html=None)
        except NotificationError as exc:  # no address, template missing or broken
            return await self._deliveries.fail(route, exc, 0, None, template)
        key = delivery_key(base_key, route.name, recipient, rendered)
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
            return await self._deliveries.send(call, route, notification, self.retry_policy)
        store = self.idempotency
        try:
            while (state := await claim_key(store, key)) == "busy":
                await store.wait(key)
        except NotificationError as exc:
            return await self._deliveries.fail(route, exc, 0, notification, template)
        if state == "done":
            return ChannelResult(route.name, "duplicate", notification, None, 0)
        keeper = asyncio.ensure_future(hold_claim(store, key)) if isfinite(store.lease) else None
        went_out: list[bool] = []  # the receiver accepted it (Channel.mark_accepted)
        try:
            result = await self._deliveries.send(
                call, route, notification, self.retry_policy, lambda: went_out.append(True)
            )
        except BaseException:
            # the claim is given up even if cancelled again meanwhile (a claim left
            # pending blocks every retry until its lease ends: for ever in memory), unless
            # the receiver had accepted the message: then a retry would send it twice
            await settled_soon(end_claim(store, key, keeper, delivered=bool(went_out)))
            raise
        # recorded even if the caller is cancelled now: the message went out (a pending
        # claim would make the retry wait for the lease, then send it again)
        await settled_soon(end_claim(store, key, keeper, delivered=result.ok))
        return result

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._deliveries.closed

    @property
    def dead_letters(self) -> deque[Failure]:
        """What failed for good, oldest first (the last 1000 kept): deliveries, as
        :class:`NotificationDeadLetter`, and ``on`` handlers :meth:`emit` ran, as
        :class:`~pepperpy.event.DeadLetter`."""
        return self._deliveries.dead_letters

    def _closed_for_good(self) -> bool:
        return self.closed

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
        grace = check_seconds(grace, "grace", zero=True, error=ValueError)
        if not await self._deliveries.stop(grace):
            return
        await self._subscriptions.detach(grace)
        await self.idempotency.close()
        seen: set[int] = set()
        for route in self._routes.values():
            if id(route.channel) not in seen:
                seen.add(id(route.channel))
                try:
                    await route.channel.close()
                except Exception:
                    logger.exception("closing channel %r failed", route.name)


async def _render_off_loop(
    templates: TemplateLibrary, template: str, route: Route, values: Mapping[str, Any]
) -> Rendered:
    """Render without stalling the event loop (and with it every handler, timer and
    ``close()``) for longer than :data:`~._sandbox.INLINE_BUDGET`: on the loop first,
    then, if that is not enough, in a worker thread (:func:`~._sandbox.rendered`). The
    sandbox stops a render at its deadline; one that reaches no check point is given up
    here a second later."""
    lookup = (route.name, route.kind)
    try:
        return await _sandbox.rendered(
            functools.partial(templates.render, template, lookup, values)
        )
    except TimeoutError:
        raise TemplateError(
            f"template {template!r} for channel {route.name!r} was still rendering after "
            f"{_sandbox.RENDER_TIMEOUT + 1:g}s; given up (its thread stops at its next check)"
        ) from None


def _check_notify_arguments(to: object, subject: object, body: object) -> None:
    """Wrong types are the caller's bug: a ``TypeError`` now, not a failed delivery."""
    for name, value in (("subject", subject), ("body", body)):
        if value is not None and not isinstance(value, str):
            raise TypeError(f"notify() {name} must be a str or None, got {value!r}")
    if to is None or isinstance(to, str):
        return
    if not isinstance(to, Mapping):
        raise TypeError(
            f"notify() to must be a str, a mapping of channel name to str, or None, got {to!r}"
        )
    for channel, address in to.items():
        if not isinstance(channel, str) or not (address is None or isinstance(address, str)):
            raise TypeError(
                f"notify() to must map channel names (str) to addresses (str), "
                f"got {channel!r}: {address!r}"
            )


def _first(entry: tuple[Callable[..., Any], bool]) -> Callable[..., Any]:
    return entry[0]


def _check_kind(kind: object, name: str) -> None:
    """Refuse a ``kind`` no recipient field or template variant could match (the check
    the channels' constructors make too)."""
    check_kind(kind, f"channel {name!r}", "the channel's own kind")
