"""Delivering a notification on a channel: its tries, their retries, and how it ends.

Each try takes its turn from the channel's rate limit and runs in a scope that
``close()`` can cut off; a delivery that fails for good becomes a
:class:`~pepperpy.event.notifications.NotificationDeadLetter`. Closing stops retries at
once, gives tries under way a grace period, then cuts them off.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .._errors import ClosedError, EventError, NotificationError
from .._frames import release_locals
from .._handlers import call as call_handler
from .._manager import DeadLetter
from .._retry import RetryPolicy
from ._models import ChannelResult, Notification, NotificationDeadLetter
from ._ratelimit import RateLimit
from .channels import Channel
from .channels.base import PAUSE, SENT, TURN

__all__ = ["CLOSE_GRACE", "Call", "Deliveries", "Failure", "Route"]

logger = logging.getLogger("pepperpy.event.notifications")

#: what ``dead_letters`` keeps and ``on_error`` callbacks get: a delivery that failed for
#: good, or an ``on`` handler that did (run by the system's own ``emit``)
Failure = NotificationDeadLetter | DeadLetter
ErrorCallback = Callable[[Failure], Any]

DEAD_LETTER_LIMIT = 1000
#: seconds ``close()`` gives, by default, for deliveries under way before closing channels
CLOSE_GRACE = 10.0
#: seconds ``close()`` then gives the tries it cut off to record their failure
CUT_WIND_UP = 1.0


@dataclass(slots=True)
class Route:
    """A channel as added: its name, kind, rate limit and retry policy (None: the default)."""

    name: str
    channel: Channel
    kind: str
    rate_limit: RateLimit | None
    retry_policy: RetryPolicy | None


class _Try:
    """One try of one delivery: its rate-limit turn, and the scope ``close()`` cuts off.

    ``waiting`` is True while the try waits for a rate-limit slot (nothing sent yet);
    ``refused`` is set when the system was closed before the try could write; ``cut``
    says what ``close()`` cut off (``"waiting"`` or ``"sending"``), if it did; ``sent``
    once the channel said the receiver accepted the message (``on_sent`` is told then).
    """

    __slots__ = (
        "asked",
        "closed",
        "cut",
        "granted",
        "limit",
        "on_sent",
        "refused",
        "scope",
        "sent",
        "started",
        "waiting",
    )

    def __init__(
        self,
        limit: RateLimit | None,
        closed: Callable[[], ClosedError | None],
        on_sent: Callable[[], None] | None = None,
    ) -> None:
        self.limit = limit
        self.closed = closed
        self.on_sent = on_sent
        self.sent = False
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

    @contextlib.contextmanager
    def pause(self) -> Iterator[None]:
        """A wait of the channel's before it writes (for a free connection): refused once
        the system closed, and ended at once by ``close()``, as a rate-limit wait."""
        closed = self.closed()
        if closed is not None:
            self.refused = closed
            raise closed
        self.waiting = True
        try:
            yield
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

    def mark_sent(self) -> None:
        """The receiver accepted the message: whatever happens next, it was delivered."""
        if not self.sent:
            self.sent = True
            if self.on_sent is not None:
                self.on_sent()

    def cut_off(self) -> None:
        """End the try now (on its own loop): its scope expires, cancelling what it awaits."""
        if self.cut is None and not self.scope.expired():
            self.cut = "waiting" if self.waiting else "sending"
            with contextlib.suppress(RuntimeError):  # the try is just leaving its scope
                self.scope.reschedule(asyncio.get_running_loop().time())


@dataclass(eq=False, slots=True)
class Call:
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


class Deliveries:
    """The ``notify`` calls under way, and how each of their deliveries ends.

    A delivery is tried, and retried by its policy, until it is sent or fails for good:
    then it is kept in :attr:`dead_letters` with the reason, logged, and passed to the
    ``error_callbacks``. The system's ``on`` handlers that fail for good go the same
    way, through :meth:`report`. :meth:`stop` (the system's ``close()``) ends them all,
    and the handlers' retry waits, which take part as calls (see ``_handler_failures``).
    """

    def __init__(self) -> None:
        self.dead_letters: deque[Failure] = deque(maxlen=DEAD_LETTER_LIMIT)
        self.error_callbacks: list[tuple[ErrorCallback, bool]] = []
        self.closed = False
        self.grace = CLOSE_GRACE
        self._calls: set[Call] = set()
        self._lock = threading.Lock()  # loops in several threads may notify

    def check_open(self) -> None:
        if self.closed:
            raise ClosedError("the notification system is closed")

    def begin(self) -> Call:
        loop = asyncio.get_running_loop()
        call = Call(loop, loop.create_future(), loop.create_future())
        with self._lock:
            self.check_open()  # again: close() may have run since the first check
            self._calls.add(call)
        return call

    def end(self, call: Call) -> None:
        with self._lock:
            self._calls.discard(call)
        _set(call.done)

    async def send(
        self,
        call: Call,
        route: Route,
        notification: Notification,
        default_policy: RetryPolicy,
        on_sent: Callable[[], None] | None = None,
    ) -> ChannelResult:
        """Deliver ``notification`` on ``route``: try, retry by the route's policy (else
        ``default_policy``), dead-letter it when it fails for good.

        A try whose channel said the receiver accepted the message
        (``Channel.mark_accepted``) is a delivery even if it then fails
        or is cut off; ``on_sent`` is called at that moment (so a caller cancelled
        meanwhile still knows the message went out)."""
        policy = route.retry_policy or default_policy
        channel = route.channel

        async def fail(error: Exception, attempts: int) -> ChannelResult:
            return await self.fail(route, error, attempts, notification, notification.template)

        attempt = 0
        while True:
            attempt += 1
            closed = self.closed_before(route, attempt)
            if closed is not None:  # no try starts after close(), not even a first one
                return await fail(closed, attempt - 1)
            current = _Try(
                route.rate_limit, functools.partial(self.closed_before, route, attempt), on_sent
            )
            turn = TURN.set(current.take_turn)
            pause = PAUSE.set(current.pause)
            sent = SENT.set(current.mark_sent)
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
                SENT.reset(sent)
                PAUSE.reset(pause)
                TURN.reset(turn)
                current.closed = _over  # see _over
            if current.sent:  # accepted, then failed or cut off ending the session: delivered
                logger.info(
                    "channel %r: the receiver accepted the message (try %d), then: %s; "
                    "counted as sent",
                    route.name,
                    attempt,
                    error,
                )
                return ChannelResult(route.name, "sent", notification, None, attempt)
            if current.refused is not None:  # closed before the try could write
                return await fail(current.refused, attempt - 1)
            if current.scope.expired():  # close() cut the try off
                if current.cut == "waiting":  # ... while it waited for a rate-limit slot
                    return await fail(self.closed_before(route, attempt) or error, attempt - 1)
                cut = ClosedError(
                    f"the notification system was closed and try {attempt} on channel "
                    f"{route.name!r} was still under way after the {self.grace:g}s grace; "
                    "it was cut off (the receiver may have got the message)"
                )
                cut.__cause__ = raised
                return await fail(cut, attempt)
            retry = (
                not self.closed  # a try that failed after close() is not retried
                and channel.is_retryable(error)
                and any(policy.should_retry(cause, attempt) for cause in _causes(error))
            )
            if not retry:
                return await fail(error, attempt)
            delay = policy.delay(attempt)
            asked = _asked_delay(error)
            if asked is not None:  # the receiver said when (Retry-After)
                ceiling = max(policy.max_delay, delay)
                if asked > ceiling:
                    late = NotificationError(
                        f"{error}; it asked to be tried again in {asked:g}s, later than the "
                        f"retry policy's max_delay ({ceiling:g}s) allows: not retried"
                    )
                    late.__cause__ = error
                    return await fail(late, attempt)
                delay = max(delay, asked)
            logger.info(
                "channel %r failed (try %d of %d), retrying: %s",
                route.name,
                attempt,
                policy.max_attempts,
                error,
            )
            if delay > 0:  # close() ends the wait at once (and the next round stops)
                await asyncio.wait((call.stop,), timeout=delay)

    def closed_before(self, route: Route, attempt: int) -> ClosedError | None:
        """The error of try ``attempt`` when the system closed before it could send."""
        if not self.closed:
            return None
        return ClosedError(
            f"the notification system was closed before try {attempt} on channel "
            f"{route.name!r}; not sent"
        )

    async def fail(
        self,
        route: Route,
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
        if attempts:
            logger.error(
                "notification on channel %r failed after %d attempt(s): %s",
                route.name,
                attempts,
                letter.reason,
                exc_info=error,
            )
        else:  # refused before any send (no recipient, a template that cannot render)
            logger.error("notification on channel %r not sent: %s", route.name, letter.reason)
        await self.report(letter)
        # logged and seen by every callback: the kept letter keeps its traceback's lines,
        # not the variables of the channel's frames (a request body, a client's buffers)
        release_locals(error)
        return ChannelResult(route.name, "failed", notification, error, attempts)

    async def report(self, letter: Failure) -> None:
        """Keep ``letter`` in :attr:`dead_letters` and pass it to every error callback."""
        self.dead_letters.append(letter)
        for callback, is_async in list(self.error_callbacks):
            try:
                await call_handler(callback, is_async, letter)
            except Exception:
                logger.exception("notification on_error callback %r failed", callback)

    async def stop(self, grace: float) -> bool:
        """No try starts from here on; end the calls under way (False: already stopped).

        Calls on this event loop get up to ``grace`` seconds, then their tries still
        running are cut off and get :data:`CUT_WIND_UP` seconds to record that; calls on
        other loops are told to stop but not awaited.
        """
        with self._lock:
            if self.closed:
                return False
            self.closed = True
            self.grace = grace
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
        return True


def _over() -> ClosedError | None:
    """What an ended try asks, instead of the system's deliveries, whether it closed.

    The contexts copied while the try ran (timers of the channel's timeouts, which the
    loop keeps until they would have fired, even cancelled) still hold its turn, so a
    try that ended must not hold the deliveries (their dead letters, and ``on_error``
    callbacks that may hold the system): those could not be collected until then.
    """
    return ClosedError("this notification try is over")


def _set(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _causes(error: BaseException) -> list[BaseException]:
    """``error`` and its chain of causes (what ``retry_on`` is matched against)."""
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in chain and len(chain) < 16:
        chain.append(current)
        current = current.__cause__
    return chain


def _asked_delay(error: BaseException) -> float | None:
    """The seconds a receiver asked to wait before the next try (a webhook's
    ``Retry-After``, kept as ``retry_after`` on the error or one of its causes), if any."""
    for cause in _causes(error):
        asked = getattr(cause, "retry_after", None)
        if isinstance(asked, int | float) and not isinstance(asked, bool) and asked >= 0:
            return float(asked)
    return None


def _as_notification_error(name: str, exc: Exception) -> Exception:
    """Channel errors as library errors: foreign exceptions are wrapped, ``from`` them."""
    if isinstance(exc, EventError):
        return exc
    error = NotificationError(f"channel {name!r} failed: {type(exc).__name__}: {exc}")
    error.__cause__ = exc
    return error
