"""Options of the Redis transport, from keyword arguments or the URL's query string."""

from __future__ import annotations

import zlib
from dataclasses import dataclass, fields, replace
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..._errors import ConfigurationError

__all__ = ["RedisOptions", "parse_url", "partition_of"]


@dataclass(frozen=True)
class RedisOptions:
    """How the Redis transport lays out and consumes its streams.

    Every process sharing a ``namespace`` must use the same ``partitions`` (checked at
    start). The other options may differ per process.
    """

    #: prefix of every key the transport creates (streams, leases, member sets)
    namespace: str = "pepperpy"
    #: number of partition streams; also the most members a group can keep busy
    partitions: int = 16
    #: entries fetched per read (XREAD/XREADGROUP COUNT)
    batch_size: int = 100
    #: seconds a group member's partition leases live without renewal; a member that
    #: dies loses its partitions (and their pending events) to the others after this
    lease_ttl: float = 10.0
    #: a group event delivered this many times without being acknowledged (its consumer
    #: died or its delivery raised each time) goes to ``deadletter.<topic>`` instead
    max_deliveries: int = 5
    #: approximate cap on each partition stream's length (``XADD MAXLEN ~``); None keeps
    #: everything until :meth:`RedisTransport.trim` removes what every group acknowledged
    maxlen: int | None = None
    #: after each publish, wait for this many replicas to confirm (``WAIT``); 0 = none
    replicas: int = 0
    #: seconds ``start``/``publish`` keep retrying while Redis is unreachable, or wait for
    #: a free connection while the pool's ``max_connections`` (a URL parameter) are in use
    connect_timeout: float = 10.0
    #: longest pause between reconnection attempts, in seconds
    max_backoff: float = 2.0
    #: seconds between automatic trims (entries every group acknowledged); None = never
    trim_interval: float | None = 30.0
    #: entries younger than this many seconds are never trimmed (live listeners lag a bit)
    retention: float = 60.0

    def __post_init__(self) -> None:
        if not isinstance(self.namespace, str) or not self.namespace or " " in self.namespace:
            raise ConfigurationError(f"namespace must be a non-empty word, got {self.namespace!r}")
        _positive_int("partitions", self.partitions, upper=1024)
        _positive_int("batch_size", self.batch_size, upper=100_000)
        _positive_int("max_deliveries", self.max_deliveries, upper=1_000_000)
        if self.maxlen is not None:
            _positive_int("maxlen", self.maxlen, upper=None)
        if not isinstance(self.replicas, int) or self.replicas < 0:
            raise ConfigurationError(f"replicas must be an int >= 0, got {self.replicas!r}")
        if self.trim_interval is not None:
            _positive_number("trim_interval", self.trim_interval)
        if not isinstance(self.retention, int | float) or self.retention < 0:
            raise ConfigurationError(f"retention must be a number >= 0, got {self.retention!r}")
        for name in ("lease_ttl", "connect_timeout", "max_backoff"):
            _positive_number(name, getattr(self, name))
        if self.lease_ttl < 0.3:
            raise ConfigurationError(f"lease_ttl must be at least 0.3 s, got {self.lease_ttl!r}")

    @property
    def lease_ttl_ms(self) -> int:
        return int(self.lease_ttl * 1000)

    @property
    def heartbeat(self) -> float:
        """Seconds between lease renewals: a third of the TTL, so two may fail."""
        return self.lease_ttl / 3

    def stream(self, partition: int) -> str:
        return f"{self.namespace}:stream:{partition}"

    def group_key(self, group_id: str, suffix: str) -> str:
        return f"{self.namespace}:group:{group_id}:{suffix}"


def _positive_number(name: str, value: Any) -> None:
    if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
        raise ConfigurationError(f"{name} must be a positive number, got {value!r}")


def _positive_int(name: str, value: Any, *, upper: int | None) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigurationError(f"{name} must be an int >= 1, got {value!r}")
    if upper is not None and value > upper:
        raise ConfigurationError(f"{name} must be at most {upper}, got {value!r}")


_CONVERTERS: dict[str, type] = {
    "namespace": str,
    "partitions": int,
    "batch_size": int,
    "lease_ttl": float,
    "max_deliveries": int,
    "maxlen": int,
    "replicas": int,
    "connect_timeout": float,
    "max_backoff": float,
    "trim_interval": float,
    "retention": float,
}


#: options that take ``none`` (or ``off``) in a URL to mean None
_OPTIONAL = frozenset({"maxlen", "trim_interval"})


def parse_url(url: str, options: RedisOptions) -> tuple[str, RedisOptions]:
    """Split our options out of ``url``'s query string; the rest is for redis-py.

    ``redis://host:6379/0?namespace=orders&partitions=32`` gives redis-py
    ``redis://host:6379/0`` and options with that namespace and partition count.
    Keyword arguments given to the transport win over the URL where they differ from
    the defaults.
    """
    if not isinstance(url, str):
        raise ConfigurationError(f"the Redis URL must be a str, got {url!r}")
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ConfigurationError(f"not a Redis URL: {url!r} (use redis://, rediss:// or unix://)")
    ours: dict[str, Any] = {}
    theirs: list[tuple[str, str]] = []
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        convert = _CONVERTERS.get(name)
        if convert is None:
            theirs.append((name, value))
            continue
        if name in _OPTIONAL and value.lower() in ("", "none", "off"):
            ours[name] = None
            continue
        try:
            ours[name] = convert(value)
        except ValueError as exc:
            raise ConfigurationError(f"bad {name}={value!r} in Redis URL {url!r}") from exc
    known = {f.name for f in fields(RedisOptions)}
    defaults = RedisOptions()
    explicit = {
        name: getattr(options, name)
        for name in known
        if getattr(options, name) != getattr(defaults, name)
    }
    merged = replace(defaults, **{**ours, **explicit})
    client_url = urlunsplit(parts._replace(query=urlencode(theirs)))
    if not parts.netloc:  # unix:///path: urlunsplit drops the "//" redis-py requires
        client_url = f"{parts.scheme}://{client_url[len(parts.scheme) + 1 :]}"
    return client_url, merged


def partition_of(routing: str, partitions: int) -> int:
    """The partition of a key (or, for events without one, of the topic).

    CRC-32 of the UTF-8 text modulo the partition count: any Redis client can compute
    it to publish into the same partition (and so the same order) as we do.
    """
    return zlib.crc32(routing.encode()) % partitions
