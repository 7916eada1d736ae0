"""What a namespace holds in Redis: its layout (the partition count, recorded once and
checked by every process) and, for tests and throw-away environments, its deletion.

Every key the transport makes is under ``<namespace>:``: the partition streams
(``<namespace>:stream:<n>``, with their consumer groups), ``<namespace>:meta``, and per
group its member set, leases and handover marks (``<namespace>:group:...``).

:func:`connect` is the start-up check, with the errors that no retry mends named for
what they are."""

from __future__ import annotations

import asyncio
import os
import re
import socket
from typing import TYPE_CHECKING, Any

from ..._errors import ConfigurationError, TransportError
from ..._redact import redact_url
from ._outage import server_of
from ._tls import answers_plain_text, answers_tls, plain_text_cut
from ._wire import refusals

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from ._config import RedisOptions

__all__ = ["check_layout", "connect", "delete_namespace"]

#: keys deleted per UNLINK
_BATCH = 500
#: seconds a ``rediss://`` handshake may go unanswered before the port is asked whether
#: it speaks plain text (a Redis without TLS there answers nothing to the handshake)
PLAIN_TEXT_PROBE_AFTER = 1.0
#: what SCAN's MATCH reads as a pattern, escaped in a namespace to match it literally
_GLOB = re.compile(r"([\\*?\[\]^])")


#: resolver errors that say the host name does not exist (``EAI_AGAIN``, a resolver
#: that does not answer, is retried like an unreachable server)
_NO_SUCH_HOST = {
    code for code in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", None)) if code is not None
}


async def connect(client: Redis, options: RedisOptions, url: str, exceptions: Any) -> None:
    """The first command at start (:func:`check_layout`), its failures named for what
    they are (operations audit, finding 12).

    A refusal names the server and the database (``DB index is out of range`` said
    neither); a server that is no Redis server (``Protocol error, got "I"``: a NATS port)
    is called that; a host name that does not resolve fails at once, naming the host,
    rather than being retried for ``connect_timeout`` as if Redis were starting.
    Anything else propagates, to be retried or reported by the caller.
    """
    where = server_of(url)
    try:
        if url[:9].lower() == "rediss://":
            await _unless_plain_text(client, check_layout(client, options, url), where)
        else:
            await check_layout(client, options, url)
    except refusals(exceptions) as exc:  # answered, and no: retrying changes nothing
        raise TransportError(
            f"Redis at {where} refused connecting: {exc} (check the user and password in "
            "the transport's URL)"
        ) from exc
    except exceptions.ConnectionError as exc:
        missing = _missing_tls_file(client)
        if missing is not None:  # every connection would load it: no retry finds it
            option, path = missing
            raise TransportError(
                f"cannot connect to Redis at {where}: the file {path!r} given as {option} "
                "in the transport's URL does not exist"
            ) from exc
        if await _tls_port(client, url, exc):
            raise TransportError(
                f"the server at {where} answers in TLS at this port, and a redis:// URL "
                f"speaks plain text: use a rediss:// URL for it (rediss://{where}, with "
                "ssl_ca_certs naming the CA of its certificate if it is not a public one)"
            ) from exc
        failure = _no_such_host(exc)
        if failure is None:
            raise
        host = client.connection_pool.connection_kwargs.get("host", where)
        raise TransportError(
            f"cannot connect to Redis at {where}: the host name {host!r} does not resolve "
            f"({failure.strerror}); check the host in the transport's URL"
        ) from exc
    except exceptions.InvalidResponse as exc:
        raise TransportError(
            f"the server at {where} does not speak the Redis protocol ({exc}): check the "
            f"host and port in the transport's URL"
        ) from exc
    except exceptions.ResponseError as exc:
        db = client.connection_pool.connection_kwargs.get("db", 0)
        raise TransportError(f"Redis at {where} (database {db}) refused connecting: {exc}") from exc


#: the TLS files a ``rediss://`` URL may name, loaded at every connection
_TLS_FILES = ("ssl_ca_certs", "ssl_ca_path", "ssl_certfile", "ssl_keyfile")


def _missing_tls_file(client: Redis) -> tuple[str, str] | None:
    """The first TLS file option of ``client`` naming a path that does not exist.

    redis-py reports it as ``Error 2 connecting to host:port. No such file or
    directory.``, a connection error: it was retried for ``connect_timeout`` and then
    reported as Redis being unreachable.
    """
    settings = client.connection_pool.connection_kwargs
    for option in _TLS_FILES:
        path = settings.get(option)
        if isinstance(path, str) and path and not os.path.exists(path):
            return option, path
    return None


async def _tls_port(client: Redis, url: str, exc: BaseException) -> bool:
    """Whether ``exc``, met by a ``redis://`` URL, is a TLS port cutting its plain text.

    Redis resets such a connection without a reply, as a server going away does: it was
    retried for ``connect_timeout`` and reported as unreachable. One TLS probe of the
    port (only after such a cut) tells them apart.
    """
    if not url.startswith("redis://") or not plain_text_cut(exc):
        return False
    settings = client.connection_pool.connection_kwargs
    host, port = settings.get("host"), settings.get("port")
    if not isinstance(host, str) or not isinstance(port, int):
        return False
    timeout = settings.get("socket_connect_timeout") or 5.0
    return await answers_tls(host, port, min(float(timeout), 5.0))


async def _unless_plain_text(client: Redis, layout: Any, where: str) -> None:
    """Await ``layout`` (the first command of a ``rediss://`` client), unless the port
    turns out to speak plain text meanwhile: then :class:`TransportError` saying so.

    Redis without TLS answers a TLS handshake with nothing at all (it reads the
    ClientHello as the start of an inline command), so a ``rediss://`` URL at its port
    waited out ``connect_timeout`` (10 s by default) and was reported as "unreachable
    ...: no answer", while NATS (``tls://``) and RabbitMQ (``amqps://``) name the same
    mistake at once. After :data:`PLAIN_TEXT_PROBE_AFTER` without an answer, one
    plain-text ``PING`` asks the port; a TLS server merely slow to answer refuses it and
    the handshake goes on.
    """
    first = asyncio.ensure_future(layout)
    try:
        done, _ = await asyncio.wait([first], timeout=PLAIN_TEXT_PROBE_AFTER)
        if not done:
            settings = client.connection_pool.connection_kwargs
            host, port = settings.get("host"), settings.get("port")
            if (
                isinstance(host, str)
                and isinstance(port, int)
                and await answers_plain_text(host, port, PLAIN_TEXT_PROBE_AFTER)
            ):
                raise TransportError(
                    f"the server at {where} answers in plain text at this port, without "
                    f"TLS, and a rediss:// URL speaks TLS: use a redis:// URL for it "
                    f"(redis://{where}), or the server's tls-port"
                )
        await first
    finally:
        if not first.done():
            first.cancel()
            await asyncio.wait([first])  # its connection closed; raises nothing


def _no_such_host(exc: BaseException) -> socket.gaierror | None:
    """The resolver's "no such host" error behind ``exc`` (redis-py wraps it), if any."""
    seen: BaseException | None = exc
    for _ in range(8):  # a short chain; never loop on a cycle
        if seen is None:
            return None
        if isinstance(seen, socket.gaierror) and seen.errno in _NO_SUCH_HOST:
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


async def check_layout(client: Redis, options: RedisOptions, url: str) -> None:
    """Record the partition count once per namespace; refuse a different one."""
    key = f"{options.namespace}:meta"
    await client.hsetnx(key, "partitions", options.partitions)
    stored = await client.hget(key, "partitions")
    if stored is None:
        return
    try:
        count = int(stored)
    except ValueError:  # another client wrote it: int() said only "invalid literal"
        raise ConfigurationError(
            f"namespace {options.namespace!r} on {redact_url(url)}: {key} holds "
            f"partitions={stored!r}, which is no partition count; another client wrote it "
            f"(this transport was given {options.partitions}: HSET {key} partitions "
            f"{options.partitions} if that is the namespace's count)"
        ) from None
    if count != options.partitions:
        raise ConfigurationError(
            f"namespace {options.namespace!r} on {redact_url(url)} uses "
            f"{count} partitions, this transport was given {options.partitions}"
        )


async def delete_namespace(client: Redis, namespace: str) -> int:
    """Delete every key under ``<namespace>:`` (found with ``SCAN MATCH``, ``UNLINK``ed
    in batches); returns how many went. Run again after a failure, it deletes the rest."""
    pattern = _GLOB.sub(r"\\\1", namespace) + ":*"
    deleted = 0
    batch: list[bytes | str] = []
    async for key in client.scan_iter(match=pattern, count=_BATCH):
        batch.append(key)
        if len(batch) >= _BATCH:
            deleted += await client.unlink(*batch)
            batch = []
    if batch:
        deleted += await client.unlink(*batch)
    return deleted
