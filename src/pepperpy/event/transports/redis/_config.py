"""Options of the Redis transport, from keyword arguments or the URL's query string."""

from __future__ import annotations

import codecs
import inspect
import math
import re
import ssl
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any
from urllib.parse import SplitResult, parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from ..._errors import ConfigurationError
from ..._options import check_count
from ..._redact import redact_url
from ..._seconds import check_seconds
from .._url_options import DECIMAL as _DECIMAL
from .._url_options import WHOLE as _WHOLE
from .._url_options import decimal_seconds as _strict_float
from .._url_options import not_a_url, query_options, unknown_option
from .._url_options import whole_number as _strict_int

__all__ = ["CLIENT_DEFAULTS", "RedisOptions", "client_options", "parse_url", "partition_of"]


#: the largest count Redis takes for ``XADD MAXLEN`` and ``WAIT`` (a signed 64-bit long)
_REDIS_LONG = 2**63 - 1

#: the longest ``lease_ttl``, in seconds. Its milliseconds go through the lease script,
#: whose Lua prints numbers of 15 digits and more in exponent form, which Redis refuses
#: as no integer (``1e15`` s raised "value is not an integer" at start, ``1e308`` an
#: OverflowError); a day is already longer than anyone waits for a dead member
MAX_LEASE_TTL = 86_400

#: the range of ``max_backoff``, in seconds. The pauses start at 0.05 s and double up
#: to it: a smaller cap made every loop retry a lost connection at once, over and over
#: (``1e-9``: some thousand attempts a second each); a larger one left the consumers
#: asleep long after Redis was back, none of them woken by its return (``1e12``: they
#: never read again). Five minutes is Kubernetes' longest crash-loop pause
MIN_BACKOFF = 0.05
MAX_BACKOFF = 300.0


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
        # a value of the wrong type (True for a count included) is a TypeError, a value of
        # the right type out of range a ConfigurationError
        namespace = f"namespace must be a non-empty word, got {self.namespace!r}"
        if not isinstance(self.namespace, str):
            raise TypeError(namespace)
        # no whitespace at all (a tab or a line break was taken, where a space was not),
        # no control character: it starts every key name, and is shown in logs
        if not self.namespace or not self.namespace.isprintable() or " " in self.namespace:
            raise ConfigurationError(namespace)
        _positive_int("partitions", self.partitions, upper=1024)
        _positive_int("batch_size", self.batch_size, upper=100_000)
        _positive_int("max_deliveries", self.max_deliveries, upper=1_000_000)
        if self.maxlen is not None:
            _positive_int("maxlen", self.maxlen, upper=_REDIS_LONG)
        check_count(self.replicas, "replicas", least=0)
        if self.replicas > _REDIS_LONG:
            raise ConfigurationError(
                f"replicas must be at most {_REDIS_LONG}, got {self.replicas!r}"
            )
        if self.trim_interval is not None:
            check_seconds(self.trim_interval, "trim_interval")
        check_seconds(self.retention, "retention", zero=True)
        for name in ("lease_ttl", "connect_timeout", "max_backoff"):
            check_seconds(getattr(self, name), name)
        if self.lease_ttl < 0.3:
            raise ConfigurationError(f"lease_ttl must be at least 0.3 s, got {self.lease_ttl!r}")
        if self.lease_ttl > MAX_LEASE_TTL:
            raise ConfigurationError(
                f"lease_ttl must be at most {MAX_LEASE_TTL} s (a day: a dead member's "
                f"partitions wait this long), got {self.lease_ttl!r}"
            )
        if not MIN_BACKOFF <= self.max_backoff <= MAX_BACKOFF:
            raise ConfigurationError(
                f"max_backoff must be from {MIN_BACKOFF:g} to {MAX_BACKOFF:g} s (the longest "
                "pause between reconnection attempts: the pauses start at 0.05 s, and the "
                "consumers sleep through it even once Redis is back), got "
                f"{self.max_backoff!r}"
            )

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


def _finite(value: Any) -> bool:
    """True for an int or float other than NaN and the infinities (a bool is no number).

    NaN passes every ``<=`` check (``nan <= 0`` is False), and would fail much later, raw.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return isinstance(value, int) or math.isfinite(value)


def _positive_int(name: str, value: Any, *, upper: int | None) -> None:
    check_count(value, name)
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


#: what each of our options takes in a URL, for the message refusing other text
_TAKES = {
    name: (
        (
            "a whole number in digits 0-9"
            if convert is int
            else "a number of seconds in decimal digits (30, 0.5)"
        )
        + (", or none" if name in ("maxlen", "trim_interval") else "")
    )
    for name, convert in _CONVERTERS.items()
    if convert is not str
}
#: how each of our options' text becomes its value
_PARSERS: dict[str, Callable[[str], Any]] = {
    name: _strict_int if convert is int else _strict_float
    for name, convert in _CONVERTERS.items()
    if convert is not str
}

#: options that take ``none`` (or ``off``) in a URL to mean None
_OPTIONAL = frozenset({"maxlen", "trim_interval"})

#: the path of a ``redis://`` URL: none, or the database number (redis-py drops every
#: ``/`` and ignores what is then no number: ``/abc`` was database 0, ``/1/2`` database 12)
_DB_PATH = re.compile(r"/?|/[0-9]+/?")


def parse_url(url: str, given: Mapping[str, Any]) -> tuple[str, RedisOptions]:
    """Split our options out of ``url``'s query string; the rest is for redis-py.

    ``redis://host:6379/0?namespace=orders&partitions=32`` gives redis-py
    ``redis://host:6379/0`` and options with that namespace and partition count.
    ``given``, the keyword arguments the transport was given explicitly, win over the
    URL, whatever their values (``partitions=16`` over ``?partitions=8``, though 16 is
    the default).
    """
    if not isinstance(url, str):
        raise TypeError(f"the Redis URL must be a str, got {not_a_url(url)}")
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # an unclosed IPv6 bracket: "redis://[::1/0"
        raise ConfigurationError(f"bad Redis URL {redact_url(url)!r}: {exc}") from exc
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ConfigurationError(
            f"not a Redis URL: {redact_url(url)!r} (use redis://, rediss:// or unix://)"
        )
    _check_port(url, parts)
    _check_host(url, parts)
    if parts.scheme == "unix" and not unquote(parts.path).strip("/"):
        if not any(name == "path" and value for name, value in parse_qsl(parts.query)):
            raise ConfigurationError(
                f"the Redis URL {redact_url(url)} names no socket: give its path "
                "(unix:///run/redis/redis.sock)"
            )
    path = unquote(parts.path)
    if parts.scheme != "unix" and not _DB_PATH.fullmatch(path):
        raise ConfigurationError(
            f"the Redis URL {redact_url(url)} has the path {path!r}, which is no database "
            "number: give the database as the path (redis://host:6379/0), or no path for "
            "database 0"
        )
    ours: dict[str, Any] = {}
    theirs: list[tuple[str, str]] = []
    for name, value in query_options([parts.query], where="the Redis URL"):
        convert = _CONVERTERS.get(name)
        if convert is None:
            theirs.append((name, value))
            continue
        if name in _OPTIONAL and value.lower() in ("", "none", "off"):
            ours[name] = None
            continue
        try:
            ours[name] = _PARSERS.get(name, convert)(value)
        except ValueError as exc:
            raise ConfigurationError(
                f"bad {name}={value!r} in the Redis URL {redact_url(url)!r}: {name} must be "
                f"{_TAKES[name]}"
            ) from exc
    if parts.scheme != "unix" and path.strip("/") and int(path.strip("/")) > _MAX_DB:
        raise ConfigurationError(
            f"bad database {path.strip('/')} in the Redis URL {redact_url(url)}: a database "
            f"number is from 0 to {_MAX_DB} (the server has its `databases` setting's count, "
            "16 by default)"
        )
    _check_db(url, parts.scheme, path, theirs)
    merged = replace(RedisOptions(), **{**ours, **given})
    client_url = urlunsplit(parts._replace(query=urlencode(theirs)))
    if not parts.netloc:  # unix:///path: urlunsplit drops the "//" redis-py requires
        client_url = f"{parts.scheme}://{client_url[len(parts.scheme) + 1 :]}"
    return client_url, merged


def _check_port(url: str, parts: SplitResult) -> None:
    """Refuse a port no server listens on: 0 (which redis-py took, and start() then
    retried as an unreachable Redis for ``connect_timeout``), past 65535, or no number."""
    if parts.scheme == "unix":
        return
    host = parts.netloc.rpartition("@")[2]
    text = "" if host.endswith("]") else host.rpartition(":")[2] if ":" in host else ""
    if not text:
        return  # none: redis-py's 6379
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is None or not 1 <= port <= 65535 or not text.isdigit():
        raise ConfigurationError(
            f"bad port {text!r} in the Redis URL {redact_url(url)}: a port is a whole "
            "number from 1 to 65535 (or none, for 6379)"
        )


def _check_host(url: str, parts: SplitResult) -> None:
    """Refuse a ``redis://`` (``rediss://``) URL without a host, ``redis://:6379/0``.

    redis-py connects to localhost then: a URL made from an unset variable
    (``redis://${REDIS_HOST}:6379/0``) reached whatever Redis this machine runs, silently,
    or was retried as an unreachable Redis for ``connect_timeout``. redis-py's own
    ``?host=`` still names it (``redis:///0?host=cache``); ``localhost`` is written out.
    """
    if parts.scheme == "unix" or parts.hostname:
        return
    if any(name == "host" and value for name, value in parse_qsl(parts.query)):
        return
    raise ConfigurationError(
        f"the Redis URL {redact_url(url)!r} names no host: give it (redis://HOST:6379/0, "
        "redis://localhost:6379/0 for this machine)"
    )


def _check_db(url: str, scheme: str, path: str, query: list[tuple[str, str]]) -> None:
    """Refuse a ``redis://`` (``rediss://``) URL naming two databases, ``/1?db=2``.

    redis-py takes the query's ``db`` over the path's, so the transport read and wrote
    another database than the path says. ``?db=`` alone (no path, or ``/``) is redis-py's
    own way to name it and stays accepted, as does the same number given twice; a
    ``unix://`` URL's path is the socket, its database only ever ``?db=``.
    """
    digits = path.strip("/")
    if scheme == "unix" or not digits:
        return
    for name, value in query:
        if name != "db":
            continue
        try:
            same = int(value) == int(digits)
        except ValueError:
            return  # no number: client_options refuses it, naming db
        if not same:
            raise ConfigurationError(
                f"the Redis URL {redact_url(url)} names two databases, {int(digits)} (its "
                f"path) and {value} (?db=): give the database once, as the path "
                f"(redis://host:6379/{int(digits)})"
            )


#: what the transport's clients get unless the URL sets it: redis-py's own defaults changed
#: between releases (5.0.x: no socket timeout, 2**31 connections), and the transport's
#: bounds (a silent server, close() during a partition, the pool's size) depend on them
CLIENT_DEFAULTS: dict[str, Any] = {"socket_timeout": 5.0, "max_connections": 100}

#: what Redis takes as a connection's name: printable ASCII, no space ("!" to "~")
_CLIENT_NAME = re.compile(r"[!-~]*")

#: seconds a blocking read (``XREAD``/``XREADGROUP BLOCK``) waits on the server; the
#: socket timeout must leave it room, or every idle read would count as a silent server
BLOCK_SECONDS = 1.0


def client_options(client_url: str, connection: Any) -> dict[str, Any]:
    """What redis-py makes of ``client_url`` (the URL without our options), checked now.

    ``connection`` is ``redis.asyncio.connection``. A query parameter that is neither one
    of ours nor one redis-py's connections or pool take (a typo: ``?partiton=8``) would
    reach redis-py's connection class and fail at start() with a bare TypeError; a value
    the transport's bounds rest on that is not a positive finite number (``nan``) would
    fail later still, or never time out. Both raise :class:`ConfigurationError` here,
    naming the parameter, as does what redis-py refuses when it makes a connection object
    (``protocol=5``): at start() that came as a ``ConnectionError`` before any socket
    I/O, retried as if Redis were down. Returns redis-py's keyword arguments for the URL.
    """
    parts = urlsplit(client_url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    classes = {"rediss": "SSLConnection", "unix": "UnixDomainSocketConnection"}
    accepted = _client_parameters(getattr(connection, classes.get(parts.scheme, "Connection")))
    if accepted is not None:
        accepted |= _parameters(connection.ConnectionPool) - {"connection_class"}
        plain = _client_parameters(connection.Connection) or set()
        for name, _ in query:
            if name not in accepted:
                error = unknown_option(
                    name,
                    where="the Redis URL",
                    ours=(f.name for f in fields(RedisOptions)),
                    driver="a redis-py connection option",
                    theirs=accepted,
                    list_theirs=False,  # some 40, mostly redis-py's internals
                )
                if name.startswith("ssl_"):
                    error = ConfigurationError(
                        f"{error}; it is a TLS option: use a rediss:// URL for TLS"
                    )
                elif parts.scheme == "unix" and name in plain:
                    error = ConfigurationError(
                        f"{error}; it is an option of TCP connections (redis:// or rediss://), "
                        "not of a Unix socket"
                    )
                raise error
    _check_client_query(client_url, parts, query)
    try:
        parsed: dict[str, Any] = dict(connection.parse_url(client_url))
    except ValueError as exc:
        raise ConfigurationError(f"bad Redis URL {_shown(client_url)!r}: {exc}") from exc
    for name in ("socket_timeout", "socket_connect_timeout"):
        if name in parsed and (not _finite(parsed[name]) or parsed[name] <= 0):
            raise ConfigurationError(
                f"{name} in the Redis URL must be a finite number of seconds > 0, "
                f"got {parsed[name]!r}"
            )
    timeout = parsed.get("socket_timeout")
    if timeout is not None and timeout < 2 * BLOCK_SECONDS:
        raise ConfigurationError(
            f"socket_timeout in the Redis URL must be at least {2 * BLOCK_SECONDS:g} s: the "
            f"transport's blocking reads wait up to {BLOCK_SECONDS:g} s on the server, got "
            f"{timeout!r}"
        )
    limit = parsed.get("max_connections")
    if limit is not None and limit < 1:
        raise ConfigurationError(
            f"max_connections in the Redis URL must be at least 1, got {limit!r}"
        )
    protocol = parsed.get("protocol")
    if protocol is not None and protocol not in (2, 3):
        raise ConfigurationError(
            f"protocol in the Redis URL must be 2 or 3 (RESP2 or RESP3), got {protocol!r}"
        )
    _check_reply_shape(parsed)
    client_name = parsed.get("client_name")
    if client_name is not None and not _CLIENT_NAME.fullmatch(str(client_name)):
        # Redis refuses it at every connection (CLIENT SETNAME): start() failed with
        # "refused connecting", delete_topology() with "refused deleting namespace"
        raise ConfigurationError(
            f"client_name in the Redis URL must be printable ASCII without spaces (Redis "
            f"refuses any other in CLIENT SETNAME), got {client_name!r}"
        )
    # what redis-py checks when it makes a connection object (before any socket I/O)
    # raises there, every time, as a ConnectionError the transport cannot tell from Redis
    # being down: make one now, unconnected, so that such a value is refused here
    try:
        connection.ConnectionPool.from_url(client_url).make_connection()
    except Exception as exc:
        raise ConfigurationError(f"bad Redis URL {_shown(client_url)!r}: {exc}") from exc
    return parsed


_BOOLEANS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
_BOOLEAN = "true or false (or yes/no, 1/0)"
#: the largest database number Redis takes in SELECT (a C int); how many a server has is
#: its ``databases`` setting (16 by default), checked at start() ("DB index is out of range")
_MAX_DB = 2**31 - 1
#: the longest ``health_check_interval``: redis-py adds it to the loop's clock, which a
#: value past a float's range (``10**400``) broke with an OverflowError at each connection
_MAX_HEALTH_CHECK = 86_400

#: redis-py parameters that take a Python object (a class, a callable, a mapping): a URL's
#: text can only name them, and redis-py then failed deep inside, or much later
_OBJECT_OPTIONS = frozenset(
    {
        "connection_class",
        "credential_provider",
        "driver_info",
        "encoder_class",
        "event_dispatcher",
        "parser_class",
        "redis_connect_func",
        "retry",
        "socket_keepalive_options",
        "socket_type",
        "maint_notifications_config",
        "maint_notifications_pool_handler",
        "maintenance_state",
        "maintenance_notification_hash",
        "orig_host_address",
        "orig_socket_timeout",
        "orig_socket_connect_timeout",
        "oss_cluster_maint_notifications_handler",
        "himport_registry",
    }
)

#: what the URL's address gives: redis-py takes the address's over the query's silently
_ADDRESS_OPTIONS = {
    "host": "redis://HOST:6379/0",
    "port": "redis://host:PORT/0",
    "path": "unix:///PATH",
}


def _whole(value: str, least: int, most: int | None) -> bool:
    # ASCII digits only (a sign where negatives are taken): redis-py's int() read "1_6" as
    # 16, and took spaces and other scripts' digits
    if not _WHOLE.fullmatch(value.removeprefix("-") if least < 0 else value):
        return False
    number = int(value)
    return number >= least and (most is None or number <= most)


def _seconds(value: str, least: float) -> bool:
    # ASCII decimal notation, as the transport's own options (float() took "1_0", " 1")
    if not _DECIMAL.fullmatch(value):
        return False
    number = float(value)
    return math.isfinite(number) and number >= least and number > 0


def _tls_version(value: str) -> bool:
    try:
        ssl.TLSVersion(int(value))
    except ValueError:
        return False
    return True


def _ciphers(value: str) -> bool:
    try:
        ssl.create_default_context().set_ciphers(value)
    except ssl.SSLError:
        return False
    return True


def _verify_flags(value: str) -> bool:
    names = [name.strip() for name in value.strip("[]").split(",")]
    return all(name in ssl.VerifyFlags.__members__ for name in names)


def _ca_data(value: str) -> bool:
    try:
        ssl.create_default_context().load_verify_locations(cadata=value)
    except (ssl.SSLError, ValueError):
        return False
    return True


def _error_handler(value: str) -> bool:
    try:
        codecs.lookup_error(value)
    except LookupError:
        return False
    return True


def _exception_names(value: str) -> bool:
    import redis.exceptions

    names = [name.strip() for name in value.strip("[]").split(",")]
    return all(
        isinstance(getattr(redis.exceptions, name, None), type)
        and issubclass(getattr(redis.exceptions, name), Exception)
        for name in names
    )


#: the redis-py options of the URL whose text is checked here, each with its test and
#: what it accepts. redis-py reads any text but a few words (which differ between its
#: releases: "off" only since 6.x) as true, takes a negative health_check_interval (a PING
#: before every command), and leaves many values to fail at connect time, retried there
#: as if Redis were down
_CLIENT_VALUES: dict[str, tuple[Callable[[str], bool], str]] = {
    "db": (
        lambda v: _whole(v, 0, _MAX_DB),
        f"a database number from 0 to {_MAX_DB} (the server has its `databases` setting's "
        "count, 16 by default)",
    ),
    "socket_timeout": (
        lambda v: _seconds(v, 2 * BLOCK_SECONDS),
        f"a finite number of seconds, at least {2 * BLOCK_SECONDS:g} (the transport's "
        f"blocking reads wait up to {BLOCK_SECONDS:g} s on the server)",
    ),
    "socket_connect_timeout": (lambda v: _seconds(v, 0), "a finite number of seconds > 0"),
    "health_check_interval": (
        lambda v: _whole(v, 0, _MAX_HEALTH_CHECK),
        f"a whole number of seconds from 0 (no health checks) to {_MAX_HEALTH_CHECK}",
    ),
    "max_connections": (lambda v: _whole(v, 1, None), "a whole number, at least 1"),
    "socket_read_size": (lambda v: _whole(v, 1, None), "a whole number of bytes, at least 1"),
    "socket_keepalive": (lambda v: v.lower() in _BOOLEANS, _BOOLEAN),
    "retry_on_timeout": (lambda v: v.lower() in _BOOLEANS, _BOOLEAN),
    "ssl_check_hostname": (lambda v: v.lower() in _BOOLEANS, _BOOLEAN),
    "legacy_responses": (lambda v: v.lower() in _BOOLEANS, _BOOLEAN),
    "protocol": (lambda v: _whole(v, -(2**63), None), "2 (RESP2; 3 is not supported)"),
    "ssl_cert_reqs": (
        lambda v: v in ("none", "optional", "required"),
        "none, optional or required",
    ),
    "ssl_min_version": (
        _tls_version,
        "a TLS version's number in Python's ssl.TLSVersion: 771 (TLS 1.2) or 772 (TLS 1.3)",
    ),
    "ssl_ciphers": (_ciphers, "an OpenSSL cipher list this Python's ssl module takes"),
    "ssl_include_verify_flags": (
        _verify_flags,
        "names of Python's ssl.VerifyFlags, comma-separated (VERIFY_X509_STRICT)",
    ),
    "ssl_exclude_verify_flags": (
        _verify_flags,
        "names of Python's ssl.VerifyFlags, comma-separated (VERIFY_X509_STRICT)",
    ),
    "ssl_ca_data": (_ca_data, "PEM text of one or more CA certificates"),
    "encoding_errors": (_error_handler, "a codec error handler: strict, replace or ignore"),
    "retry_on_error": (
        _exception_names,
        "names of redis.exceptions classes, comma-separated (ConnectionError,TimeoutError)",
    ),
}

#: a query option whose value is a secret that redact_url does not know (the client
#: key's passphrase): hidden in the messages too
_SSL_PASSWORD = re.compile(r"(?i)((?:^|[?&])ssl(?:_|%5f)password=)[^&#]*")


def _shown(url: str) -> str:
    """``url`` for a message: its passwords hidden, ``?ssl_password=`` included."""
    return _SSL_PASSWORD.sub(r"\1***", redact_url(url))


def _address_differs(name: str, value: str, parts: SplitResult) -> bool:
    """Whether ``?host=`` or ``?path=`` is not what redis-py uses: the address's, when it
    has one."""
    if name == "path":
        return parts.scheme != "unix" or bool(parts.path) and unquote(parts.path) != value
    return bool(parts.hostname) and unquote(parts.hostname or "") != value.lower()


def _check_client_query(client_url: str, parts: SplitResult, query: list[tuple[str, str]]) -> None:
    """Refuse a redis-py option of the URL whose text redis-py would misread, ignore, or
    fail on only when connecting, naming the option, its value and what it accepts."""
    shown = _shown(client_url)
    for name, value in query:
        if name in _OBJECT_OPTIONS:
            raise ConfigurationError(
                f"{name} cannot be given in the Redis URL {shown}: redis-py takes a Python "
                "object for it, which a URL cannot hold"
            )
        if name == "port":
            raise ConfigurationError(
                f"port cannot be given in the query of the Redis URL {shown} (redis-py "
                "takes the address's, or refuses the query's text): give it in the "
                "address (redis://host:PORT/0)"
            )
        if name in _ADDRESS_OPTIONS and _address_differs(name, value, parts):
            raise ConfigurationError(
                f"{name} in the query of the Redis URL {shown} differs from the URL's "
                f"address, which redis-py takes over the query's silently: give the {name} "
                f"once, in the address ({_ADDRESS_OPTIONS[name]})"
            )
        if value == "":
            raise ConfigurationError(
                f"{name} has no value in the Redis URL {shown}: give one, or leave {name} "
                "out (redis-py ignored it, keeping its default)"
            )
        check = _CLIENT_VALUES.get(name)
        if check is not None and not check[0](value):
            raise ConfigurationError(
                f"bad value {value!r} for {name} in the Redis URL {shown}: {name} must be "
                f"{check[1]}"
            )
    for name, address in (("username", parts.username), ("password", parts.password)):
        given = dict(query).get(name)
        if address and given is not None and unquote(address) != given:
            raise ConfigurationError(
                f"the Redis URL {shown} gives two {name}s, in its address and as ?{name}= "
                f"(redis-py took the address's silently): give the {name} once"
            )


def _check_reply_shape(parsed: Mapping[str, Any]) -> None:
    """Refuse the redis-py options that change what its replies look like.

    The transport reads replies as redis-py gives them over RESP2 by default: bytes, and
    ``XREADGROUP``'s as a list of streams. ``protocol=3`` (and ``legacy_responses=false``)
    make it a dict, ``decode_responses`` makes it text (redis-py takes the URL's value as
    it stands, so ``?decode_responses=false`` decodes too), and another ``encoding`` than
    UTF-8 writes keys and events other processes and clients cannot read. Each was
    accepted, and a group then logged a traceback at every read, or never delivered.
    """
    if parsed.get("protocol") == 3:
        raise ConfigurationError(
            "protocol=3 in the Redis URL is not supported: the transport reads Redis's "
            "replies in their RESP2 shapes; leave protocol out, or give protocol=2"
        )
    if parsed.get("legacy_responses") is False:
        raise ConfigurationError(
            "legacy_responses=false in the Redis URL is not supported: the transport reads "
            "redis-py's replies in their legacy (RESP2) shapes; leave legacy_responses out"
        )
    if "decode_responses" in parsed:
        raise ConfigurationError(
            f"decode_responses in the Redis URL is not supported (got "
            f"{parsed['decode_responses']!r}): the transport reads Redis's replies as bytes "
            "and decodes them itself; leave decode_responses out"
        )
    encoding = parsed.get("encoding")
    if encoding is not None:
        try:
            name = codecs.lookup(str(encoding)).name
        except LookupError:
            name = None
        if name != "utf-8":
            raise ConfigurationError(
                f"encoding in the Redis URL must be utf-8, got {encoding!r}: the transport's "
                "keys and events are UTF-8 for every process and client; leave encoding out"
            )


def _client_parameters(connection_class: type) -> set[str] | None:
    """The keyword arguments ``connection_class`` takes, following ``**kwargs`` up its
    bases (redis-py's connection classes pass theirs on); None if the last one still
    takes any keyword, so that nothing can be refused."""
    names: set[str] = set()
    for cls in connection_class.__mro__:
        init = vars(cls).get("__init__")
        if init is None:
            continue
        parameters = inspect.signature(init).parameters.values()
        names |= {p.name for p in parameters if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
        if not any(p.kind is p.VAR_KEYWORD for p in parameters):
            return names - {"self"}
    return None


def _parameters(cls: type) -> set[str]:
    parameters = inspect.signature(cls).parameters.values()
    return {p.name for p in parameters if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}


def partition_of(routing: str, partitions: int) -> int:
    """The partition of a key (or, for events without one, of the topic).

    CRC-32 of the UTF-8 text modulo the partition count: any Redis client can compute
    it to publish into the same partition (and so the same order) as we do.
    """
    return zlib.crc32(routing.encode()) % partitions
