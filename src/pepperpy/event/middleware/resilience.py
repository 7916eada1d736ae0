"""Middleware that shape failures and load: retry, timeout, rate limit, dead letter."""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import Any

from .._cancel import cancelling
from .._event import Event
from .._frames import release_locals
from .._guarded import guarded
from .._loops import LoopShares, resolve, wake
from .._manager import DEAD_LETTER_LIMIT, DeadLetter
from .._options import check_count
from .._processor import NextHandler, failed_handlers
from .._processor_links import _completed, stoppable_pause
from .._removal import remove_last
from .._retry import RetryPolicy, check_policy
from .._seconds import check_seconds

__all__ = ["DeadLetterMiddleware", "RateLimitMiddleware", "RetryMiddleware", "TimeoutMiddleware"]

logger = logging.getLogger("pepperpy.event.processor")

#: tries counted by RetryMiddleware for the DeadLetterMiddleware further out, with the
#: processor record (``_completed``) of the ``process`` call the counter belongs to: the
#: variable is inherited by everything a handler calls, and a RetryMiddleware of another
#: processor run from inside a handler must not count its tries as the outer ones
_attempts: contextvars.ContextVar[tuple[object, list[int]] | None] = contextvars.ContextVar(
    "pepperpy_event_attempts", default=None
)


class RetryMiddleware:
    """Run the rest of the chain again when it fails, per a :class:`RetryPolicy`.

    Exceptions outside ``policy.retry_on`` and the last failure propagate unchanged.
    Only the handlers that failed run again (a handler that succeeded, alone or beside
    others, is skipped when something else failed); the ``ExceptionGroup`` of several
    failed handlers is retried when every error in it is retryable. A handler whose own
    ``await`` was cancelled failed with ``HandlerCancelledError``, retried like any
    ``Exception``.
    """

    def __init__(self, policy: RetryPolicy = RetryPolicy.EXPONENTIAL) -> None:
        self.policy = policy

    @property
    def policy(self) -> RetryPolicy:
        """The schedule of the tries; one set later applies to the events that start then."""
        return self._policy

    @policy.setter
    def policy(self, value: RetryPolicy) -> None:
        # checked when set, not at the first failure (an AttributeError deep inside),
        # with what to pass for the usual slips (None, RetryPolicy.exponential uncalled)
        self._policy = check_policy(value, "policy")

    async def __call__(self, event: Event, next_handler: NextHandler) -> None:
        policy = self._policy
        attempt = 1
        slot = _attempts.get()
        counter = slot[1] if slot is not None and slot[0] is _completed.get() else None
        while True:
            try:
                await next_handler(event)
                return
            except Exception as exc:
                if counter is not None:
                    counter[0] = attempt
                if not _should_retry(policy, exc, attempt):
                    raise
                logger.warning(
                    "attempt %d of %s (%s) failed, retrying: %r",
                    attempt,
                    event.type,
                    event.id,
                    exc,
                )
                # a stop of the attachment (or its bus's close) does not wait it out
                with stoppable_pause((exc, attempt, policy)):
                    await policy.sleep(attempt)
                attempt += 1


def _should_retry(policy: RetryPolicy, exc: Exception, attempt: int) -> bool:
    """``policy.should_retry``, also for the ExceptionGroup of several failed handlers.

    A group is retried when every exception in it is one the policy retries.
    """
    if policy.should_retry(exc, attempt):
        return True
    if isinstance(exc, BaseExceptionGroup) and attempt < policy.max_attempts:
        _, rest = exc.split(lambda member: policy.should_retry(member, attempt))
        return rest is None
    return False


_EMPTY = contextvars.Context()  # what the watchdog timer runs in: nothing of any event's


class _Deadline:
    __slots__ = ("at", "cancelling", "expired", "task")

    def __init__(self, at: float, task: asyncio.Task[Any]) -> None:
        self.at = at
        self.task = task
        self.cancelling = task.cancelling()
        self.expired = False


class _Watchdog:
    """One event loop's pending deadlines, in arrival order, and the timer serving them.

    Every deadline it holds has the same length (``seconds``), so arrival order is
    deadline order. Only that loop's thread touches it: the deadlines' tasks and the
    timer live there.
    """

    __slots__ = ("keys", "loop", "pending", "seconds", "timer")

    def __init__(self, loop: asyncio.AbstractEventLoop, seconds: float) -> None:
        self.loop = loop
        self.seconds = seconds  # the length of every deadline it serves
        self.pending: dict[int, _Deadline] = {}  # arrival order == deadline order
        self.keys = itertools.count()
        self.timer: asyncio.TimerHandle | None = None

    def arm(self, at: float) -> None:
        if self.timer is not None:
            self.timer.cancel()
        # in an empty context: a timer keeps the context it is armed in for as long as
        # it waits, and the watchdog re-arms itself from that context, so the first
        # event's (its processor's record of failed handlers, with their tracebacks,
        # and the application's context variables) stayed alive as long as events came
        self.timer = self.loop.call_at(at, self.expire, context=_EMPTY)

    def expire(self) -> None:
        self.timer = None
        now = self.loop.time()
        pending = self.pending
        while pending:
            key = next(iter(pending))
            deadline = pending[key]
            if deadline.at > now:
                self.arm(deadline.at)
                return
            del pending[key]
            if not deadline.task.done():
                deadline.expired = True
                deadline.task.cancel()

    def abandon(self) -> None:
        """Forget everything: the loop closed without finishing its tasks."""
        self.pending.clear()
        self.timer = None


class TimeoutMiddleware:
    """Fail with :class:`TimeoutError` when the rest of the chain takes over ``seconds``.

    The work is cancelled at the deadline, in the same task (no Task is created), with
    the semantics of ``asyncio.timeout``. Unlike ``asyncio.timeout`` it does not arm a
    timer per event: deadlines of one middleware all share the same length, so they
    expire in arrival order and one watchdog timer per event loop, re-armed for the
    oldest pending deadline, serves them all. One middleware may serve processors on
    several event loops (threads) at once: each loop has a watchdog of its own. A
    handler's own ``TimeoutError`` propagates unchanged.

    ``seconds`` may be set later, checked as the constructor checks it: the events that
    start afterwards get the new limit, those already running keep theirs.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    @property
    def seconds(self) -> float:
        """How long the rest of the chain may take, per event."""
        return self._seconds

    @seconds.setter
    def seconds(self, value: float) -> None:
        seconds = check_seconds(value, "seconds", error=ValueError)
        # new watchdogs for the new length: a watchdog's deadlines expire in arrival
        # order only while they all have one length (a shorter one queued behind the
        # old ones waited for them); the old watchdogs still serve what they hold
        self._seconds = seconds
        self._watchdogs: LoopShares[_Watchdog] = LoopShares(partial(_Watchdog, seconds=seconds))
        self._last: _Watchdog | None = None  # the last one used: most calls need no lookup

    async def __call__(self, event: Event, next_handler: NextHandler) -> None:
        task = asyncio.current_task()
        assert task is not None, "middleware runs inside a task"
        loop = task.get_loop()
        watchdog = self._last
        if watchdog is None or watchdog.loop is not loop:
            watchdog = self._last = self._watchdogs.here()
        deadline = _Deadline(loop.time() + watchdog.seconds, task)
        key = next(watchdog.keys)
        watchdog.pending[key] = deadline
        if watchdog.timer is None:
            watchdog.arm(deadline.at)
        try:
            await next_handler(event)
        except asyncio.CancelledError as exc:
            if not deadline.expired:
                raise
            deadline.expired = False  # handled here
            if task.uncancel() > deadline.cancelling:
                raise  # also cancelled from outside: that cancellation wins
            raise TimeoutError(
                f"processing {event.type} ({event.id}) took longer than {watchdog.seconds}s"
            ) from exc
        finally:
            watchdog.pending.pop(key, None)
            if deadline.expired:  # expired, but the handler swallowed the cancellation
                task.uncancel()


class _Line:
    """One event loop's waiting line for tokens: only that loop's tasks touch it."""

    __slots__ = ("lock", "loop", "waiting", "woken")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.lock = asyncio.Lock()  # FIFO: waiters are served first come, first served
        self.waiting = 0  # tasks in the line, served or waiting to be
        #: what the line's first waiter sleeps on until its token is due; a new rate
        #: resolves it early (from any thread), and the waiter counts again
        self.woken: asyncio.Future[None] | None = None

    def abandon(self) -> None:
        """Nothing to drop: the line's waiters went with their loop."""


class RateLimitMiddleware:
    """Let at most ``rate`` events per second through (token bucket of size ``burst``).

    Events over the limit wait for a token rather than being dropped: the limit slows
    the source down (backpressure), it never loses events. One middleware may serve
    processors on several event loops (threads) at once: the bucket, and so the rate,
    is shared by all of them; each loop has a waiting line of its own, first come,
    first served.
    """

    def __init__(self, rate: float, *, burst: int | None = None) -> None:
        self.rate = rate
        self.burst = max(1, int(rate)) if burst is None else burst
        self._tokens = float(self._burst)
        self._stamp = time.monotonic()
        # held for the bucket's arithmetic only, never across an await: threads running
        # other event loops take tokens from the same bucket
        self._bucket_lock = threading.Lock()
        self._lines: LoopShares[_Line] = LoopShares(_Line)
        self._last: _Line | None = None  # the last one used: most calls need no lookup

    # ``rate`` and ``burst`` may be set later, checked as the constructor checks them
    # (a rate of 0 divided by zero at the next event, a burst of 0 made every event
    # wait forever): the bucket refills at the new rate from then on

    @property
    def rate(self) -> float:
        """Events per second let through, on average."""
        return self._rate

    @rate.setter
    def rate(self, value: float) -> None:
        message = f"rate must be a finite number of events/s > 0, got {value!r}"
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise TypeError(message)  # a wrong type (docs/errors.md)
        if not 0 < _as_float(value) < math.inf:  # an int too large for a float too
            raise ValueError(message)
        lines = getattr(self, "_lines", None)
        if lines is None:  # the constructor's
            self._rate = float(value)
            return
        with self._bucket_lock:  # the tokens earned so far at the old rate, then the new
            now = time.monotonic()
            self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
            self._stamp = now
            self._rate = float(value)
        # a waiter slept for as long as the old rate said: raised from one event in 100 s
        # to 1,000/s, the event waiting went on waiting the 100 s
        for line in lines.values():
            woken = line.woken
            if woken is not None:
                wake(line.loop, woken)

    @property
    def burst(self) -> int:
        """The most events let through at once after a quiet spell (the bucket's size)."""
        return self._burst

    @burst.setter
    def burst(self, value: int) -> None:
        check_count(value, "burst", error=ValueError)
        if _as_float(value) == math.inf:  # the bucket is counted in floats
            raise ValueError(f"burst must be an int a float can hold, got {value!r}")
        self._burst = value

    def _take(self) -> float:
        """Take a token if one is free (0.0), else how many seconds until one is."""
        with self._bucket_lock:
            now = time.monotonic()
            rate = self._rate
            tokens = min(self._burst, self._tokens + (now - self._stamp) * rate)
            self._stamp = now
            if tokens >= 1:
                self._tokens = tokens - 1
                return 0.0
            self._tokens = tokens
            return (1 - tokens) / rate

    async def acquire(self) -> None:
        """Wait until a token is free and take it."""
        loop = asyncio.get_running_loop()
        line = self._last
        if line is None or line.loop is not loop:
            line = self._last = self._lines.here()
        if not line.waiting and not self._take():
            return
        line.waiting += 1
        try:
            # a stop of the store attachment waiting here does not wait for the token
            with stoppable_pause():
                async with line.lock:  # waiters are served first come, first served
                    while True:
                        wait = self._take()
                        if not wait:
                            return
                        woken = line.woken = loop.create_future()
                        timer = loop.call_later(wait, resolve, woken)
                        try:
                            await woken
                        finally:
                            timer.cancel()
                            line.woken = None
        finally:
            line.waiting -= 1

    async def __call__(self, event: Event, next_handler: NextHandler) -> None:
        await self.acquire()
        await next_handler(event)


def _as_float(number: float) -> float:
    """``number`` as a float: infinity for an int too large for one."""
    try:
        return float(number)
    except OverflowError:
        return math.inf


class DeadLetterMiddleware:
    """Turn a failure of the rest of the chain into recorded dead letters (:class:`DeadLetter`).

    Each letter names the handler that failed (one letter per handler when several
    failed; the rest of the chain when no handler raised the error, e.g. a validation
    failure).

    The failure is logged with its traceback, kept in the bounded ``dead_letters``
    deque, passed to ``on_error`` callbacks (sync or async) and, with ``bus=``,
    republished to ``deadletter.<type>``. Processing then continues with the next event:
    this is the one middleware that stops an error, and it never does so silently. A
    callback or republish that fails, with a ``CancelledError`` of its own too (it awaited
    something cancelled elsewhere), is logged and the rest goes on; a cancellation of the
    task running ``process`` propagates.
    Put it outside :class:`RetryMiddleware` so it only sees failures retries did not fix.
    """

    def __init__(
        self,
        on_error: Callable[[DeadLetter], Any] | None = None,
        *,
        bus: Any = None,
        maxlen: int = DEAD_LETTER_LIMIT,
    ) -> None:
        check_count(maxlen, "maxlen", least=0, error=ValueError)
        if bus is not None and not callable(getattr(bus, "publish", None)):
            raise TypeError(f"bus must have a publish(topic, event) method, got {bus!r}")
        self.dead_letters: deque[DeadLetter] = deque(maxlen=maxlen)
        self._callbacks: list[Callable[[DeadLetter], Any]] = []
        if on_error is not None:
            self.on_error(on_error)
        self.bus = bus

    def on_error(self, callback: Callable[[DeadLetter], Any]) -> Callable[[DeadLetter], Any]:
        """Register a sync or async callback receiving each dead letter (a decorator)."""
        if not callable(callback):
            raise TypeError(f"on_error callback must be callable, got {callback!r}")
        self._callbacks.append(callback)
        return callback

    def off_error(self, callback: Callable[[DeadLetter], Any]) -> bool:
        """Undo one :meth:`on_error` of ``callback`` (the most recent first): True if it
        was registered. From inside a callback: the letter being recorded still reaches
        every callback registered when its recording began; the next one does not."""
        return remove_last("off_error", self._callbacks, callback, _itself)

    async def __call__(self, event: Event, next_handler: NextHandler) -> None:
        counter = [1]
        token = _attempts.set((_completed.get(), counter))
        try:
            await next_handler(event)
        except Exception as exc:
            since = cancelling()  # only a cancellation after it is this task's own
            for letter in _letters(event, exc, next_handler, counter[0]):
                await self._record(letter, since)
        finally:
            _attempts.reset(token)

    async def _record(self, letter: DeadLetter, since: int) -> None:
        self.dead_letters.append(letter)
        event = letter.event
        logger.error(
            "processing %s (%s) failed after %d attempt(s); dead-lettered",
            event.type,
            event.id,
            letter.attempts,
            exc_info=letter.exception,
        )
        # a callback or the republish that fails, a CancelledError of its own too, is
        # logged and the rest goes on; a cancellation of this task propagates
        for callback in list(self._callbacks):
            await guarded(
                partial(callback, letter), since, logger, "dead-letter callback %r failed", callback
            )
        if self.bus is not None and not event.type.startswith("deadletter."):
            metadata = dict(event.metadata)
            exc = letter.exception
            metadata["dlreason"] = _reason(exc)
            metadata["dlattempts"] = letter.attempts
            metadata["dlid"] = event.id
            dead = Event(
                "deadletter." + event.type,
                event.data,
                metadata,
                version=event.version,
                source=event.source,
                subject=event.subject,
            )
            await guarded(
                partial(self.bus.publish, dead.type, dead),
                since,
                logger,
                "could not publish the dead letter of %s (%s)",
                event.type,
                event.id,
                awaits=True,
            )
        release_locals(letter.exception)


def _reason(exc: BaseException) -> str:
    """``Type: message`` for the republished letter's ``dlreason``; an exception whose
    ``__str__`` fails (it made the middleware raise, failing the event it was to keep)
    gives its type alone."""
    try:
        return f"{type(exc).__name__}: {exc}"
    except Exception:
        return f"{type(exc).__name__} (its message could not be read)"


def _itself(callback: Callable[[DeadLetter], Any]) -> Callable[[DeadLetter], Any]:
    return callback


def _letters(
    event: Event, exc: Exception, next_handler: NextHandler, attempts: int
) -> list[DeadLetter]:
    """The dead letters of one failure: one per handler that failed.

    A handler's own exception names that handler; the ``ExceptionGroup`` of several
    failed handlers becomes one letter per handler; a ``TimeoutError`` gives one letter
    per handler it cut off. A failure no handler raised (a middleware's, such as
    a ``ValidationError``) names the rest of the chain, ``next_handler``.
    """
    handlers = failed_handlers(exc)
    if handlers:
        return [DeadLetter(event, handler, exc, attempts) for handler in handlers]
    if isinstance(exc, ExceptionGroup):
        letters: list[DeadLetter] = []
        for member in exc.exceptions:
            who = failed_handlers(member)
            if not who:
                break
            letters.extend(DeadLetter(event, handler, member, attempts) for handler in who)
        else:
            return letters
    if isinstance(exc, TimeoutError) and exc.__cause__ is not None:
        handlers = failed_handlers(exc.__cause__)
        if handlers:  # one letter per handler the timeout cut off
            return [DeadLetter(event, handler, exc, attempts) for handler in handlers]
    return [DeadLetter(event, next_handler, exc, attempts)]
