"""How the :class:`~pepperpy.event.transports.redis.RedisTransport` retries, as a mixin.

:meth:`RedisRetrying._retrying` runs an operation against Redis until it answers or
``connect_timeout`` has passed: it tries again while Redis is unreachable, and while the
client's pool has no free connection, reports a publish's failed attempts to the
transport's outages, makes no new attempt once the transport is closing, and turns what
it gave up on into a :class:`~pepperpy.event.TransportError` (saying, for a publish,
whether its event may be stored) or a :class:`~pepperpy.event.ClosedError`. A TLS
handshake that fails for good (:func:`._tls.tls_refusal`) is not retried.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..._errors import ClosedError, TransportError
from ..._redact import redact_url
from ._config import RedisOptions
from ._outage import Outages, server_of
from ._outcome import closed_on_refusal, with_outcome
from ._tls import tls_refusal
from ._wire import POOL_POLL, Backoff

if TYPE_CHECKING:
    from redis.asyncio import Redis


class RedisRetrying:
    """Bounded attempts against Redis, for
    :class:`~pepperpy.event.transports.redis.RedisTransport`."""

    options: RedisOptions
    _client_url: str
    _exceptions: Any
    _unreachable: tuple[type[BaseException], ...]
    _refused: tuple[type[BaseException], ...]
    _pool_full: tuple[type[BaseException], ...]
    _outages: Outages
    _closed: bool
    _publishes_refused: bool
    #: the pauses between attempts under way, each with what ends it early (see _pause)
    _pauses: dict[asyncio.Future[None], Callable[[], bool]]

    async def _retrying(
        self,
        what: str,
        client: Redis,
        operation: Any,
        *,
        deadline: float | None = None,
        error: BaseException | None = None,
        unknown: Callable[[], bool] | None = None,
        after_close: bool = False,
    ) -> Any:
        """Run ``operation()`` until Redis answers or ``deadline`` (loop time) has passed.

        The deadline defaults to ``connect_timeout`` from now; ``error`` is what a first
        attempt, made by the caller, raised. Retries while Redis is unreachable, and
        while ``client``'s pool has no free connection: one comes back as soon as a
        command in flight returns, so that wait polls every few milliseconds rather than
        backing off like a reconnect. Each attempt is cut off at the deadline, so a
        silent Redis (a network partition) fails as fast as an unreachable one.

        ``unknown``: the operation is a publish, and tells whether its event may be
        stored (a copy went out and got no reply): the error raised says so. A publish's
        failed attempts are reported to the transport's outages (as the consumer loops
        report theirs), so a bus that only publishes shows an outage in ``health()`` and
        the log; :meth:`publish` reports its success.

        No attempt starts once :meth:`close` has begun (unless ``after_close``: an
        operation with a client of its own), nor, for a publish, once close() refuses
        publishes (its handlers finished): a publish raises :class:`TransportError`
        saying whether its event may be stored, anything else :class:`ClosedError`.
        """
        loop = asyncio.get_running_loop()
        if deadline is None:
            deadline = loop.time() + self.options.connect_timeout
        backoff = Backoff(self.options.max_backoff)
        pool_wait = Backoff(POOL_POLL, first=0.001)
        while True:
            stopped = self._closed if unknown is None else self._publishes_refused
            if stopped and not after_close:
                raise self._closing(what, error, unknown) from error
            if error is not None:
                pool_full = isinstance(error, self._pool_full)
                # a connection Redis closed after refusing a message over its size limit
                # pipelined before this one: Redis is fine; no outage, no pause
                cut = closed_on_refusal(error)
                if unknown is not None and not pool_full and not cut:
                    self._outages.lost(None, what, error)  # one-off: never holds it open
                pause = 0.0 if cut else pool_wait.next() if pool_full else backoff.next()
                if loop.time() + min(pause, 0.001 if pool_full else 0.05) >= deadline:
                    failure = self._gave_up(what, client, error)
                    if unknown is not None:
                        failure = with_outcome(failure, unknown=unknown())
                    raise failure from error
                await self._pause(min(pause, deadline - loop.time()), unknown, after_close)
                stopped = self._closed if unknown is None else self._publishes_refused
                if stopped and not after_close:  # during the pause: no attempt after it
                    raise self._closing(what, error, unknown) from error
            try:
                async with asyncio.timeout_at(deadline):
                    return await operation()
            except self._refused as exc:  # Redis answered: trying again changes nothing
                failure = TransportError(f"Redis refused {what}: {exc}")
                if unknown is not None:
                    failure = with_outcome(failure, unknown=unknown())
                raise failure from exc
            except self._unreachable as exc:  # the pool's limit included; TimeoutError too
                refusal = tls_refusal(exc)
                if refusal is not None:  # no retry mends it: say what, at once
                    failure = TransportError(
                        f"the TLS handshake with Redis at {server_of(self._client_url)} "
                        f"failed while {what}: {refusal}"
                    )
                    if unknown is not None:
                        failure = with_outcome(failure, unknown=unknown())
                    raise failure from exc
                # an attempt cut off at the deadline says less than the error before it
                if error is None or type(exc) is not TimeoutError:
                    error = exc
            except self._exceptions.RedisError as exc:
                failure = TransportError(f"Redis refused {what}: {exc}")
                if unknown is not None:
                    failure = with_outcome(failure, unknown=unknown())
                raise failure from exc

    async def _pause(
        self, seconds: float, unknown: Callable[[], bool] | None, after_close: bool
    ) -> None:
        """Wait ``seconds`` before the next attempt, or until close() stops the attempts
        (:meth:`_wake_pauses`): a pause of a publish ends once publishes are refused, any
        other once close() has begun (none of an operation with a client of its own).

        Slept through, a pause held close() for as long as it had left: up to
        ``max_backoff`` (up to 300 s), or ``connect_timeout`` for a publish, since close()
        waits for those, while no attempt was going to be made.
        """
        if after_close:
            await asyncio.sleep(seconds)
            return
        publish = unknown is not None

        def stopped() -> bool:
            return self._publishes_refused if publish else self._closed

        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pauses[waiter] = stopped
        try:
            await asyncio.wait([waiter], timeout=seconds)
        finally:
            del self._pauses[waiter]
            waiter.cancel()

    def _wake_pauses(self) -> None:
        """End the pauses of :meth:`_retrying` that close() has stopped (see :meth:`_pause`);
        their attempts then raise what a stopped one raises."""
        for waiter, stopped in list(self._pauses.items()):
            if stopped() and not waiter.done():
                waiter.set_result(None)

    def _closing(
        self, what: str, error: BaseException | None, unknown: Callable[[], bool] | None
    ) -> Exception:
        """What ``_retrying`` raises instead of an attempt once the transport is closing."""
        after = f" after: {str(error) or type(error).__name__}" if error is not None else ""
        if unknown is None:
            return ClosedError(f"the Redis transport was closed while {what}{after}")
        failure = TransportError(
            f"the Redis transport was closed while {what}; not tried again{after}"
        )
        return with_outcome(failure, unknown=unknown())

    def _gave_up(self, what: str, client: Redis, error: BaseException) -> TransportError:
        if isinstance(error, self._pool_full):
            return TransportError(
                f"no free Redis connection while {what} (waited "
                f"{self.options.connect_timeout}s): "
                f"{self._outages.explain(error, self._pool_full, client)}"
            )
        return TransportError(
            f"Redis at {redact_url(self._client_url)} unreachable while {what} "
            f"(gave up after {self.options.connect_timeout}s): {str(error) or 'no answer'}"
        )
