"""Where delivered idempotency keys are remembered: per process, or shared in Redis.

A delivery first *claims* its key. ``claimed`` means "send it"; ``done`` means an earlier
delivery succeeded (a duplicate); ``busy`` means another delivery holds the claim right
now, so the caller waits and asks again. A successful delivery *completes* the key; a
failed one *releases* it so a later retry may send. A claim is a lease: if its holder
dies, the claim expires after ``lease`` seconds and someone else may send.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections import OrderedDict
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from .._deps import require
from .._errors import ConfigurationError, NotificationError
from ._urls import query_options

__all__ = ["IdempotencyStore", "MemoryIdempotencyStore", "RedisIdempotencyStore", "store_from"]

Claim = Literal["claimed", "done", "busy"]


class IdempotencyStore(ABC):
    """Remembers which notifications were delivered, so none is sent twice."""

    #: seconds a claim lasts when its holder never completes or releases it
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

    async def wait(self, key: str) -> None:
        """Wait a moment before asking about a ``busy`` key again."""
        await asyncio.sleep(0.05)

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


class MemoryIdempotencyStore(IdempotencyStore):
    """Keys in this process: the ``size`` most recently used delivered ones."""

    def __init__(self, size: int = 10_000) -> None:
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size!r}")
        self.size = size
        self._done: OrderedDict[str, None] = OrderedDict()
        self._claims: dict[str, asyncio.Future[None]] = {}

    async def claim(self, key: str) -> Claim:
        if key in self._done:
            self._done.move_to_end(key)
            return "done"
        if key in self._claims:
            return "busy"
        self._claims[key] = asyncio.get_running_loop().create_future()
        return "claimed"

    async def wait(self, key: str) -> None:
        claim = self._claims.get(key)
        if claim is not None:
            await asyncio.shield(claim)

    async def complete(self, key: str) -> None:
        self._done[key] = None
        if len(self._done) > self.size:
            self._done.popitem(last=False)
        self._finish(key)

    async def release(self, key: str) -> None:
        self._finish(key)

    def _finish(self, key: str) -> None:
        claim = self._claims.pop(key, None)
        if claim is not None and not claim.done():
            claim.set_result(None)


class RedisIdempotencyStore(IdempotencyStore):
    """Keys shared by every process using one Redis: ``SET NX`` claims with a lease.

    ``ttl`` is how long a delivered key is remembered (default a week); ``prefix``
    namespaces the keys. URL form: ``redis://host:6379/0?prefix=app:notify:&ttl=86400``.
    """

    def __init__(
        self,
        url: str = "redis://localhost:6379/0",
        *,
        prefix: str = "pepperpy:notify:",
        ttl: float = 7 * 24 * 3600,
        lease: float = 300.0,
    ) -> None:
        if ttl <= 0 or lease <= 0:
            raise ConfigurationError("ttl and lease must be > 0")
        parts = urlsplit(url)
        query = query_options(parts.query)
        prefix = query.pop("prefix", prefix)
        try:
            ttl = float(query.pop("ttl", ttl))
            lease = float(query.pop("lease", lease))
        except ValueError as exc:
            raise ConfigurationError(f"ttl and lease must be numbers in {url!r}") from exc
        if query:
            raise ConfigurationError(f"unknown idempotency store option(s): {sorted(query)}")
        self.url = urlunsplit(parts._replace(query=""))
        self.prefix = prefix
        self.ttl = ttl
        self.lease = lease
        self._client: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _redis(self) -> Any:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            aioredis = require(
                "redis.asyncio", extra="redis", feature="the Redis idempotency store"
            )
            self._client = aioredis.Redis.from_url(self.url)
            self._loop = loop
        return self._client

    async def _call(self, what: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return await getattr(self._redis(), what)(*args, **kwargs)
        except Exception as exc:
            raise NotificationError(f"idempotency store {self.url} failed: {exc!r}") from exc

    async def claim(self, key: str) -> Claim:
        name = self.prefix + key
        if await self._call("set", name, b"pending", nx=True, px=int(self.lease * 1000)):
            return "claimed"
        state = await self._call("get", name)
        if state == b"done":
            return "done"
        return "busy"  # pending elsewhere, or it expired just now: ask again

    async def complete(self, key: str) -> None:
        await self._call("set", self.prefix + key, b"done", px=int(self.ttl * 1000))

    async def release(self, key: str) -> None:
        await self._call("delete", self.prefix + key)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None and self._loop is asyncio.get_running_loop():
            await client.aclose()
        self._loop = None

    def __repr__(self) -> str:
        return f"RedisIdempotencyStore({self.url!r}, prefix={self.prefix!r})"


def store_from(spec: IdempotencyStore | str | None, size: int) -> IdempotencyStore:
    """An idempotency store from an object, a ``memory://``/``redis://`` URL or None."""
    if spec is None:
        return MemoryIdempotencyStore(size)
    if isinstance(spec, IdempotencyStore):
        return spec
    if isinstance(spec, str):
        scheme = urlsplit(spec).scheme
        if scheme == "memory":
            return MemoryIdempotencyStore(size)
        if scheme in ("redis", "rediss", "unix"):
            return RedisIdempotencyStore(spec)
    raise ConfigurationError(
        f"an idempotency store is memory://, redis://... or an object: {spec!r}"
    )
