"""The failures of ``on`` handlers run by the system's own ``emit``: retries, then records.

``emit`` dispatches through an internal :class:`~pepperpy.event.EventManager`, so a
handler that raises is retried and dead-lettered as on any manager. Its retry policy is
a :class:`HandlerRetry`: the system's ``handler_retry_policy``, except that, as for
deliveries, no retry starts once the system is closed and a retry wait ends at
``close()``. A try the manager starts anyway after such a wait is refused
(:meth:`HandlerFailures.refuse`) without running the handler, and is not counted. The
manager's dead letters become the system's (:meth:`HandlerFailures.failed`).

Nothing here holds the system, so the manager inside it makes no reference cycle: a
system dropped without ``close()`` is freed (and warns) at once, as before.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from .._errors import ClosedError
from .._manager import DeadLetter
from .._retry import RetryPolicy
from ._delivery import Deliveries

__all__ = ["HandlerFailures", "HandlerRetry"]

#: set on the ClosedError of a try refused because the system closed (see not_run)
_NOT_RUN = "_pepperpy_not_run"


@dataclass(frozen=True, slots=True)
class HandlerRetry(RetryPolicy):
    """A :class:`RetryPolicy` that stops retrying when ``deliveries`` (the system) close."""

    deliveries: Deliveries | None = field(default=None, compare=False, repr=False)

    @classmethod
    def until_closed(cls, policy: RetryPolicy, deliveries: Deliveries) -> HandlerRetry:
        """``policy``'s schedule, ended by the ``close()`` of ``deliveries``' system."""
        return cls(
            policy.kind,
            policy.max_attempts,
            policy.base_delay,
            policy.max_delay,
            policy.jitter,
            policy.retry_on,
            deliveries,
        )

    def should_retry(self, exc: BaseException, attempt: int) -> bool:
        """As the policy says, and never once the system is closed."""
        if self.deliveries is not None and self.deliveries.closed:
            return False
        return RetryPolicy.should_retry(self, exc, attempt)

    async def sleep(self, attempt: int) -> None:
        """Wait the delay due, ending at once when the system closes (never raises)."""
        seconds = self.delay(attempt)
        if self.deliveries is None:
            await asyncio.sleep(seconds)
            return
        try:
            call = self.deliveries.begin()  # so close() ends the wait, as a delivery's
        except ClosedError:
            return
        try:
            await asyncio.wait((call.stop,), timeout=seconds)
        finally:
            self.deliveries.end(call)


class HandlerFailures:
    """Where the system's ``emit`` manager sends what happens to its handlers."""

    __slots__ = ("_deliveries", "_handlers")

    def __init__(self, deliveries: Deliveries) -> None:
        self._deliveries = deliveries
        #: the wrapper the manager runs -> the handler registered; weak, so a handler
        #: removed with ``off`` is forgotten once no dispatch holds its wrapper
        self._handlers: weakref.WeakKeyDictionary[Callable[..., Any], Callable[..., Any]] = (
            weakref.WeakKeyDictionary()
        )

    def policy(self, policy: RetryPolicy) -> HandlerRetry:
        """``policy``, ended by the system's ``close()``."""
        return HandlerRetry.until_closed(policy, self._deliveries)

    def add(self, wrapper: Callable[..., Any], handler: Callable[..., Any]) -> None:
        """The manager runs ``handler`` as ``wrapper``: its dead letters name ``handler``."""
        self._handlers[wrapper] = handler

    def refuse(self, handler: str) -> ClosedError | None:
        """Why the manager may not run ``handler`` now: the system closed (a retry whose
        wait ``close()`` ended, say), or None."""
        if not self._deliveries.closed:
            return None
        error = ClosedError(
            f"the notification system was closed before handler {handler!r} could run; not run"
        )
        setattr(error, _NOT_RUN, True)
        return error

    async def failed(self, letter: DeadLetter) -> None:
        """A handler failed for good: the system's dead letter, naming the handler
        registered (not its wrapper) and the tries it made (a refused one is none)."""
        attempts = letter.attempts
        if getattr(letter.exception, _NOT_RUN, False):
            attempts -= 1
        handler = self._handlers.get(letter.handler, letter.handler)
        await self._deliveries.report(replace(letter, handler=handler, attempts=attempts))
