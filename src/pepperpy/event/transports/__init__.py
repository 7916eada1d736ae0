"""Bus transports: ``memory://`` built in; Redis, NATS and RabbitMQ as extras."""

from __future__ import annotations

import importlib
from urllib.parse import urlsplit

from .._errors import ConfigurationError
from .._redact import redact_url
from ._url_options import not_a_url
from .base import NotDelivered, Subscription, Transport
from .memory import MemoryTransport

__all__ = [
    "MemoryTransport",
    "NotDelivered",
    "Subscription",
    "Transport",
    "transport_from_url",
]


#: URL scheme -> (module, class) of the transports shipped as extras
_SCHEMES: dict[str, tuple[str, str]] = {
    "redis": ("pepperpy.event.transports.redis", "RedisTransport"),
    "rediss": ("pepperpy.event.transports.redis", "RedisTransport"),
    "unix": ("pepperpy.event.transports.redis", "RedisTransport"),  # Redis's Unix socket
    "nats": ("pepperpy.event.transports.nats", "NatsTransport"),
    "tls": ("pepperpy.event.transports.nats", "NatsTransport"),
    "amqp": ("pepperpy.event.transports.rabbitmq", "RabbitMQTransport"),
    "amqps": ("pepperpy.event.transports.rabbitmq", "RabbitMQTransport"),
}


_KNOWN = "use memory://, redis://host:6379, nats://host:4222 or amqp://user:password@host/"


def transport_from_url(url: str) -> Transport:
    """Build the transport a URL names: ``memory://``, ``redis://``, ``nats://``, ``amqp://``
    (and their TLS forms), or ``unix:///path`` (Redis over its Unix socket).

    The scheme is matched without regard to case (RFC 3986): ``MEMORY://`` and
    ``REDIS://host`` work as their lower-case forms do.
    """
    if not isinstance(url, str):
        raise TypeError(f"transport must be a URL or a Transport, got {not_a_url(url)}")
    try:
        scheme = urlsplit(url).scheme.lower()
    except ValueError as exc:  # urllib's "Invalid IPv6 URL": an unclosed or stray bracket
        raise ConfigurationError(f"bad transport URL {redact_url(url)!r}: {exc}") from None
    if scheme == "" and url.lower() != "memory":  # no scheme: not a URL at all
        bare = url.strip().rstrip(":/").lower()
        hint = f"write {bare}://host" if bare in _SCHEMES else _KNOWN
        raise ConfigurationError(f"transport {redact_url(url)!r} is not a URL: {hint}")
    if scheme in ("memory", ""):
        if url.lower() not in ("memory", "memory://", "memory:"):
            raise ConfigurationError(f"the memory transport takes no address: {redact_url(url)!r}")
        return MemoryTransport()
    target = _SCHEMES.get(scheme)
    if target is None:
        raise ConfigurationError(f"unknown transport URL {redact_url(url)!r}: {_KNOWN}")
    module, name = target
    transport_class = getattr(importlib.import_module(module), name)
    transport: Transport = transport_class(url)
    return transport
