"""Where delivered idempotency keys are remembered: per process, or shared in Redis.

A delivery first *claims* its key. ``claimed`` means "send it"; ``done`` means an earlier
delivery succeeded (a duplicate); ``busy`` means another delivery holds the claim right
now, so the caller waits and asks again. A successful delivery *completes* the key; a
failed one *releases* it so a later retry may send. A shared claim is a lease: its live
holder *renews* it while the delivery is under way (waiting for a rate limit or a retry
included), so it only expires, after ``lease`` seconds, when its holder died; then
someone else may send.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
from abc import ABC, abstractmethod
from collections import OrderedDict
from math import inf
from typing import Any, Literal
from urllib.parse import urlsplit

from .._deps import require
from .._errors import ConfigurationError, NotificationError
from .._loops import resolve, wake
from .._redact import redact_url
from .._seconds import check_seconds
from ..transports.redis._config import parse_url as redis_url
from ._loopclients import LoopClients
from ._urls import query_options

__all__ = ["IdempotencyStore", "MemoryIdempotencyStore", "RedisIdempotencyStore", "store_from"]

Claim = Literal["claimed", "done", "busy"]


class IdempotencyStore(ABC):
    """Remembers which notifications were delivered, so none is sent twice."""

    #: seconds a claim lasts unless renewed; its holder renews it every third of that
    lease: float = 300.0

    @abstractmethod
    async def claim(self, key: str) -> Claim:
        """Try to take ``key``: ``claimed``, ``done`` (already delivered) or ``busy``."""

    @abstractmethod
    async def complete(self, key: str) -> None:
        """Record ``key`` as delivered (its claim becomes ``done``)."""

    @abstractmethod
    async def release(self, key: str) -> None:
        """Give up a claim after a failed delivery, so a later try may send."""

    async def renew(self, key: str) -> bool:
        """Extend this holder's claim on ``key`` by another lease; False if it was lost.

        Called every ``lease / 3`` seconds while the delivery is under way. Stores whose
        claims never expire keep this default.
        """
        return True

    async def wait(self, key: str) -> None:
        """Wait a moment before asking about a ``busy`` key again."""
        await asyncio.sleep(0.05)

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


class _Claim:
    """A key's claim in this process: the event loop its delivery runs on, and the calls
    waiting for it, each with its loop."""

    __slots__ = ("loop", "waiters")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []


#: seconds a call waits for another loop's claim before it asks again (and finds the
#: claim abandoned if that loop was closed meanwhile)
CLOSED_LOOP_CHECK = 1.0


class MemoryIdempotencyStore(IdempotencyStore):
    """Keys in this process: the ``size`` most recently used delivered ones.

    Calls on several event loops (threads) share the keys: a call waiting for another
    loop's claim is woken on its own loop. Claims have no lease (their holder is this
    process), but a claim taken on an event loop that was closed before its delivery
    finished (a thread stopped its loop without cancelling its tasks) is abandoned, as
    a crashed holder's lease expires in Redis: the next call takes it over, and one
    waiting notices within :data:`CLOSED_LOOP_CHECK` seconds. A claim is completed or
    released by its delivery, on the loop that took it; a release from any other live
    loop is ignored, so a late one from an abandoned delivery cannot drop the claim that
    took over.
    """

    lease = inf

    def __init__(self, size: int = 10_000) -> None:
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size!r}")
        self.size = size
        self._done: OrderedDict[str, None] = OrderedDict()
        self._claims: dict[str, _Claim] = {}
        self._lock = threading.Lock()

    async def claim(self, key: str) -> Claim:
        loop = asyncio.get_running_loop()
        with self._lock:
            if key in self._done:
                self._done.move_to_end(key)
                return "done"
            held = self._claims.get(key)
            if held is not None:
                if not held.loop.is_closed():
                    return "busy"
                _wake(held.waiters)  # abandoned: taken over here; they ask again
            self._claims[key] = _Claim(loop)
            return "claimed"

    async def wait(self, key: str) -> None:
        loop = asyncio.get_running_loop()
        with self._lock:
            held = self._claims.get(key)
            if held is None or held.loop.is_closed():
                return
            finished: asyncio.Future[None] = loop.create_future()
            waiter = (loop, finished)
            held.waiters.append(waiter)
        timer = loop.call_later(CLOSED_LOOP_CHECK, resolve, finished)
        try:
            await finished
        finally:
            timer.cancel()
            with self._lock:
                if waiter in held.waiters:
                    held.waiters.remove(waiter)

    async def complete(self, key: str) -> None:
        with self._lock:
            self._done[key] = None
            if len(self._done) > self.size:
                self._done.popitem(last=False)
        self._finish(key)

    async def release(self, key: str) -> None:
        self._finish(key)

    def _finish(self, key: str) -> None:
        here = asyncio.get_running_loop()
        with self._lock:
            held = self._claims.get(key)
            if held is None or (held.loop is not here and not held.loop.is_closed()):
                return  # not this delivery's claim (see the class docstring)
            del self._claims[key]
            _wake(held.waiters)


def _wake(waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]]) -> None:
    """Resolve each waiter's future on its own loop, from any thread."""
    for loop, finished in waiters:
        wake(loop, finished)  # False for a closed loop: nobody waits there any more


class RedisIdempotencyStore(IdempotencyStore):
    """Keys shared by every process using one Redis: ``SET NX`` claims with a lease.

    ``ttl`` is how long a delivered key is remembered (default a week); ``prefix``
    namespaces the keys. URL form: ``redis://host:6379/0?prefix=app:notify:&ttl=86400``.

    Each claim holds a random token. A claim whose reply was lost (the connection
    broke after Redis took it) is recognised by its token and is the caller's, not a
    claim left pending for the whole lease. :meth:`renew` (the holder does it every third of
    the ``lease`` while it delivers) and :meth:`release` only touch the claim if it still
    holds this holder's token, so a holder that stalled past its lease cannot extend or
    drop the claim another process took over. :meth:`complete` always records the key
    as delivered: the message went out. Each event loop using the store gets its own
    connections, closed as that loop shuts down. Each command waits at most 5 s for
    Redis (connecting included), then fails with :class:`NotificationError`.
    """

    def __init__(
        self,
        url: str = "redis://localhost:6379/0",
        *,
        prefix: str = "pepperpy:notify:",
        ttl: float = 7 * 24 * 3600,
        lease: float = 300.0,
    ) -> None:
        try:
            parts = urlsplit(url)
        except ValueError as exc:  # an unclosed IPv6 bracket: "redis://[::1/0"
            raise ConfigurationError(
                f"bad idempotency store URL {redact_url(url)!r}: {exc}"
            ) from exc
        query = query_options(parts.query)
        prefix = query.pop("prefix", prefix)
        # checked after the URL's values are read: a ttl of 0 (or NaN) from the URL became
        # a 1 ms expiry, and the store forgot every key at once (idempotency off)
        ttl = check_seconds(_number(query.pop("ttl"), "ttl") if "ttl" in query else ttl, "ttl")
        lease = check_seconds(
            _number(query.pop("lease"), "lease") if "lease" in query else lease, "lease"
        )
        if query:
            raise ConfigurationError(f"unknown idempotency store option(s): {sorted(query)}")
        # the address checked as the Redis transport checks its own (a bad port or
        # database is refused now: each keyed delivery failed on it, as if Redis were
        # down), and rebuilt as redis-py takes it: ``unix:///path`` keeps its "//"
        self.url, _ = redis_url(url.partition("?")[0], {})
        self.prefix = prefix
        self.ttl = ttl
        self.lease = lease
        self._clients: LoopClients[Any] = LoopClients(self._new_client, _close_client, owner=self)
        #: keys this store holds a claim on -> the claim's token (fences renew/release)
        self._tokens: dict[str, bytes] = {}

    def _new_client(self) -> Any:
        aioredis = require("redis.asyncio", extra="redis", feature="the Redis idempotency store")
        # every command bounded on every redis-py release we allow (5.0.x waits for ever
        # by default): a claim or release is finished even when its caller is cancelled
        return aioredis.Redis.from_url(self.url, **_CLIENT_TIMEOUTS)

    async def _call(self, what: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return await getattr(self._clients.here(), what)(*args, **kwargs)
        except Exception as exc:
            raise NotificationError(
                f"idempotency store {redact_url(self.url)} failed: {exc!r}"
            ) from exc

    async def claim(self, key: str) -> Claim:
        name = self.prefix + key
        token = _PENDING + secrets.token_hex(16).encode()
        state = await self._take(name, token)
        if state == token:
            self._tokens[key] = token
            return "claimed"
        if state == b"done":
            return "done"
        return "busy"  # pending elsewhere, or it expired just now: ask again

    async def _take(self, name: str, token: bytes) -> bytes | None:
        """``SET name token NX`` with the lease; what ``name`` holds then (``token``: the
        claim is ours).

        The token tells whose a claim is, so an answer that never came is not a claim
        left pending for the whole lease: a ``SET`` whose reply was lost (Redis took it,
        then the connection broke), or that redis-py sent again on a new connection (the
        second finding the first's claim), is recognised by its token. Where the key is
        not there, the claim did not land (or has not yet): the same ``SET NX`` again
        takes it at most once, whichever lands first. Only one token is ever in the key,
        so only its caller gets ``claimed``.
        """
        px = _ms(self.lease)
        try:
            if await self._call("set", name, token, nx=True, px=px):
                return token
        except NotificationError as lost:
            return await self._recover(name, token, px, lost)
        state: bytes | None = await self._call("get", name)
        return state

    async def _recover(
        self, name: str, token: bytes, px: int, lost: NotificationError
    ) -> bytes | None:
        """What ``name`` holds after a ``SET NX`` of ``token`` got no answer (see _take)."""
        try:
            state: bytes | None = await self._call("get", name)
            if state is None:
                if await self._call("set", name, token, nx=True, px=px):
                    return token
                state = await self._call("get", name)  # another claim got there first
        except NotificationError:
            pass  # Redis is still out of reach: the first failure is the one reported
        else:
            return state
        raise lost

    async def renew(self, key: str) -> bool:
        token = self._tokens.get(key)
        if token is None:
            return False
        renewed = await self._call("eval", _RENEW, 1, self.prefix + key, token, _ms(self.lease))
        return bool(renewed)

    async def complete(self, key: str) -> None:
        # recorded even if the claim was lost meanwhile: the message was delivered, and a
        # holder that took the claim over finds "done" and leaves it (its release is fenced)
        self._tokens.pop(key, None)
        await self._call("set", self.prefix + key, b"done", px=_ms(self.ttl))

    async def release(self, key: str) -> None:
        token = self._tokens.pop(key, None)
        if token is not None:
            await self._call("eval", _RELEASE, 1, self.prefix + key, token)

    async def close(self) -> None:
        """Close this loop's connections; other running loops close theirs on their loop."""
        await self._clients.close()

    def __repr__(self) -> str:
        return f"RedisIdempotencyStore({redact_url(self.url)!r}, prefix={self.prefix!r})"


_PENDING = b"pending:"
#: seconds a Redis command (or connecting) may take before it fails
_CLIENT_TIMEOUTS = {"socket_timeout": 5.0, "socket_connect_timeout": 5.0}
#: extend the lease only if the claim is still ours (a stale holder cannot keep another's)
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
#: drop the claim only if it is still ours (a stale holder cannot free another's)
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""


async def _close_client(client: Any) -> None:
    await client.aclose()


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def store_from(spec: IdempotencyStore | str | None, size: int) -> IdempotencyStore:
    """An idempotency store from an object, a ``memory://``/``redis://`` URL or None."""
    if spec is None:
        return MemoryIdempotencyStore(size)
    if isinstance(spec, IdempotencyStore):
        return spec
    if isinstance(spec, str):
        try:
            scheme = urlsplit(spec).scheme
        except ValueError as exc:  # an unclosed IPv6 bracket: "redis://[::1/0"
            raise ConfigurationError(
                f"bad idempotency store URL {redact_url(spec)!r}: {exc}"
            ) from exc
        if scheme == "memory":
            return MemoryIdempotencyStore(size)
        if scheme in ("redis", "rediss", "unix"):
            return RedisIdempotencyStore(spec)
    raise ConfigurationError(
        f"an idempotency store is memory://, redis://... or an object: {spec!r}"
    )


def _number(text: str, name: str) -> float:
    """A URL option's text as the number of seconds it spells; text that spells none is a
    bad URL (:class:`ConfigurationError`), not a wrong type."""
    try:
        return float(text)
    except ValueError:
        raise ConfigurationError(
            f"{name} must be a finite number of seconds > 0, got {text!r}"
        ) from None
