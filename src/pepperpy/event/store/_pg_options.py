"""The PostgreSQL store's URL: checked before anything connects, its options split off.

asyncpg trips over some URL values only at the first connection, with a raw
``OverflowError``, ``ValueError`` or ``IndexError``: :func:`parse_options` refuses them
at once with a :class:`~pepperpy.event.ConfigurationError` naming the problem, and
takes out the store's own options (:class:`PostgresOptions`), which asyncpg never sees.
The checkpoint store reads the same URLs. The texts saying that a bound set here ran
out live here too (:func:`explain`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from .._errors import ConfigurationError
from .base import redact_url

__all__ = [
    "CLOSE_TIMEOUT",
    "SECONDS",
    "PostgresOptions",
    "connect_timed_out",
    "explain",
    "no_answer",
    "parse_options",
    "parse_url",
]

#: seconds ``close`` waits at most (or ``command_timeout`` if smaller) for work under way
#: (queued appends, calls holding a connection) before it cuts the connections off
CLOSE_TIMEOUT = 10.0

_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,39}")
_IPV6_HOST = re.compile(r"\[[^\]]+\](?::(.*))?")

#: a host part with more than one '@' (nothing of it is shown: it holds a password)
_RAW_AT = (
    "more than one '@' before the host (not shown: it holds the password); "
    "percent-encode '@' in the user name or password as %40"
)
#: a bad host or port when the URL holds an '@' after its host part (nothing is shown)
_QUIET = (
    "the host part is not host[:port] (not shown: it may hold the password); "
    "percent-encode '@', '/', '?', '#', '[' and ']' in the user name or password "
    "(%40, %2F, %3F, %23, %5B, %5D)"
)


@dataclass(frozen=True, slots=True)
class PostgresOptions:
    """The store's own options of a ``postgresql://`` URL (asyncpg never sees them).

    ``command_timeout``: seconds one attempt at an operation waits for the server
    (client-side; also the sockets' ``TCP_USER_TIMEOUT``). ``connect_timeout``: seconds
    a new connection may take. ``listener_ping``: seconds of silence after which the
    LISTEN connection is pinged, and how long the answer may take.
    """

    schema: str | None = None
    command_timeout: float = 30.0
    connect_timeout: float = 10.0
    listener_ping: float = 5.0

    @property
    def close_timeout(self) -> float:
        """How long ``close`` waits for the server before cutting connections off."""
        return min(CLOSE_TIMEOUT, self.command_timeout)


#: the options of :class:`PostgresOptions` that take seconds
SECONDS = ("command_timeout", "connect_timeout", "listener_ping")


def parse_url(url: str) -> tuple[str, str | None]:
    """The URL for asyncpg and the store's schema (``None``: the default one).

    See :func:`parse_options`, which this is the short form of.
    """
    dsn, options = parse_options(url)
    return dsn, options.schema


def parse_options(url: str) -> tuple[str, PostgresOptions]:
    """Check a PostgreSQL URL before anything connects; split off the store's options.

    Returns the URL for asyncpg and the :class:`PostgresOptions` (``?schema=``,
    ``?command_timeout=``, ``?connect_timeout=``, ``?listener_ping=``). The parts
    asyncpg would trip over with a raw ``OverflowError``, ``ValueError`` or
    ``IndexError`` at the first connection are refused here with
    :class:`~pepperpy.event.ConfigurationError` naming the problem (the URL shown with
    its password hidden): a port that is not 1 to 5 ASCII digits or is out of 1..65535
    (in the host list or a ``?port=`` option), an empty entry in a host list, a bad
    IPv6 address, a query field that is not ``name=value``, a bad schema name, a
    timeout that is not a number of seconds > 0 or is given twice. A host part with
    more than one ``@`` (a password holding a raw ``@``, which asyncpg would split at
    the first one) is refused too; when the URL holds an ``@`` after its host part (a
    password holding a raw ``/``, ``?`` or ``#``), a bad host or port is refused
    without showing it, since it may be part of the password.
    """
    where = redact_url(url)

    def refuse(problem: str) -> ConfigurationError:
        return ConfigurationError(f"PostgreSQL URL {where}: {problem}")

    try:
        parts = urlsplit(url)
    except ValueError as exc:  # an IPv6 address without its closing bracket
        raise refuse(str(exc)) from None
    if parts.query and any("=" not in field for field in parts.query.split("&")):
        raise refuse("each query field must be name=value, the fields joined by '&'")
    query = parse_qsl(parts.query, keep_blank_values=True)
    netloc = parts.netloc
    if netloc.count("@") > 1:  # asyncpg would take the password's rest for the host
        raise refuse(_RAW_AT)
    # an '@' after the host part: a password holding a raw '/', '?' or '#' ended the host
    # part early, and what looks like a host or port is the user name and password
    # (which the messages must not echo)
    quiet = "@" in url.partition("//")[2][len(netloc) :]
    hosts = netloc.partition("@")[2] if "@" in netloc else netloc  # as asyncpg splits it
    if hosts:
        _check_hosts(hosts, refuse, quiet)
    for name, value in query:
        if name == "host" and value:
            _check_hosts(value, refuse, quiet)
        elif name == "port" and value:
            for port in value.split(","):
                _check_port(port, refuse, quiet)
    found: dict[str, Any] = {}
    schemas = [value for name, value in query if name == "schema"]
    if len(schemas) > 1:
        raise refuse("schema is given twice")
    if schemas:
        schema = schemas[0]
        if not _SCHEMA_NAME.fullmatch(schema):
            raise refuse(f"schema={schema!r}: use lower-case letters, digits and '_' (at most 40)")
        if schema.startswith("pg_") or schema == "information_schema":
            # PostgreSQL refuses to create pg_* at first use (a StoreError there, which
            # a subscription or follow() took for an outage and retried for a minute),
            # and information_schema is the catalog's own
            raise refuse(f"schema={schema!r} is one of PostgreSQL's system schemas: name another")
        found["schema"] = schema
    for name, value in query:
        if name in SECONDS:
            if name in found:
                raise refuse(f"{name} is given twice")
            found[name] = _seconds(name, value, refuse)
    if not found:
        return url, PostgresOptions()
    ours = ("schema", *SECONDS)
    rest = urlencode([(name, value) for name, value in query if name not in ours])
    return urlunsplit(parts._replace(query=rest)), PostgresOptions(**found)


def _seconds(name: str, value: str, refuse: Callable[[str], ConfigurationError]) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise refuse(f"{name}={value!r}: give a number of seconds > 0")
    return seconds


def connect_timed_out(options: PostgresOptions) -> str:
    """What to say when connecting timed out (asyncpg's ``TimeoutError`` has no text)."""
    return f"connecting timed out after {options.connect_timeout:g} s (connect_timeout)"


def no_answer(options: PostgresOptions) -> str:
    """What to say when a :class:`Watchdog` of ``command_timeout`` cut a connection off."""
    return f"PostgreSQL did not answer within {options.command_timeout:g} s (command_timeout)"


def explain(options: PostgresOptions, exc: BaseException, *, timed_out: bool = False) -> str:
    """What went wrong, in words (a timeout's own text is empty)."""
    if timed_out:
        return no_answer(options)
    if isinstance(exc, TimeoutError) and not str(exc):  # asyncpg connecting
        return connect_timed_out(options)
    return str(exc) or type(exc).__name__


def _check_hosts(
    hosts: str, refuse: Callable[[str], ConfigurationError], quiet: bool = False
) -> None:
    """Check a host list (``host1:5432,[::1]:5433,/var/run/postgresql``) as asyncpg reads it.

    ``quiet``: the list may be a user name and password, so the error shows nothing of it.
    """
    for host in hosts.split(","):
        if not host:
            raise refuse(_QUIET if quiet else f"the host list {hosts!r} has an empty entry")
        if host.startswith("/"):  # a Unix socket's directory
            continue
        if host.startswith("["):
            ipv6 = _IPV6_HOST.fullmatch(host)
            if ipv6 is None:
                if quiet:
                    raise refuse(_QUIET)
                raise refuse(f"{host!r} is not an IPv6 address in brackets, optionally with :port")
            port = ipv6.group(1) or ""
        else:
            port = host.partition(":")[2]
        if port:  # host: alone means the default port
            _check_port(unquote(port), refuse, quiet)


def _check_port(
    port: str, refuse: Callable[[str], ConfigurationError], quiet: bool = False
) -> None:
    shown = port if len(port) <= 12 else port[:12] + "..."
    if not (port.isascii() and port.isdigit()):
        raise refuse(_QUIET if quiet else f"port {shown!r} is not a number")
    if len(port) > 5 or not 1 <= int(port) <= 65535:
        raise refuse(_QUIET if quiet else f"port {shown} is out of range (1 to 65535)")
