"""Settings of the NATS transport, from keyword arguments and the URL's query string.

:class:`NatsOptions` is the one list of the options and their defaults: the URL's query
takes its field names, and ``NatsTransport``'s keyword arguments are its fields.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ..._errors import ConfigurationError
from ..._options import check_count
from ..._redact import redact_url
from ..._seconds import check_seconds
from .._url_options import (
    SECONDS_TAKES,
    WHOLE_TAKES,
    SecondsRange,
    check_seconds_ranges,
    common_names,
    decimal_seconds,
    not_a_url,
    query_options,
    unknown_option,
    whole_number,
)
from ._subjects import check_prefix

__all__ = ["SYNONYMS", "NatsOptions", "parse_url"]

_STREAM_NAME = re.compile(r"[A-Za-z0-9_-]{1,255}")
_RETENTIONS = ("interest", "limits")
#: key lanes per stream at most: a group holds one JetStream consumer per lane
MAX_PARTITIONS = 64
#: the range of ``max_outstanding_pings``: ``10**9`` never gave a silent connection up
#: (dead-connection detection off); 100 is 100 pings of ``ping_interval`` each
PINGS_RANGE = (1, 100)
#: default ack_wait of the key lanes (see ``NatsOptions.lane_ack_wait``)
LANE_ACK_WAIT = 10.0
#: JetStream's names of options that have a common name on every transport: accepted
#: as keywords and in the URL, meaning the same
SYNONYMS = {"max_deliver": "max_deliveries"}
#: the longest duration JetStream takes, in whole seconds: it holds durations as int64
#: nanoseconds (2**63 - 1 of them, about 292 years); nats-server answers a longer one
#: with an error that names something else ("consumer not found", "invalid JSON")
MAX_DURATION = (2**63 - 1) // 10**9
#: the options that JetStream holds as such a duration
_NANOSECOND_OPTIONS = ("ack_wait", "lane_ack_wait", "inactive_threshold", "max_age")
#: the TLS options (see ``_tls``), and what each names
_TLS_WHAT = {
    "tls_ca": "file's path",
    "tls_cert": "file's path",
    "tls_key": "file's path",
    "tls_hostname": "host name",
}
TLS_OPTIONS = tuple(_TLS_WHAT)
#: the range of the seconds options that had none but ``> 0``, and what each is: any
#: finite number was taken, and ``1e12`` silently turned something off for good
SECONDS_RANGES: dict[str, SecondsRange] = {
    # ``1e12``: a lost connection never retried in practice; ``1e-9``: retried back to
    # back. As RabbitMQ's reconnect_interval and Redis's max_backoff
    "reconnect_wait": (
        0.05,
        300.0,
        "the pause between connection attempts: a lost connection waits that long",
    ),
    # ``1e12``: a silent connection never noticed, a deleted stream never made again;
    # ``1e-9``: pings and stream checks back to back, flooding the server. Ten minutes
    # is five times nats-py's and nats-server's own default (two minutes)
    "ping_interval": (
        0.1,
        600.0,
        "the pause between pings to the server: a silent connection is noticed after "
        "max_outstanding_pings of them",
    ),
}


@dataclass(frozen=True)
class NatsOptions:
    """How events map onto JetStream (see ``docs/transport-nats.md``).

    * ``stream``: the JetStream stream holding the bus's events (created if missing).
    * ``prefix``: topic ``a.b`` travels on subject ``<prefix>.a.b``; the stream covers
      ``<prefix>.>``.
    * ``retention``: ``"interest"`` (default) keeps an event until every consumer whose
      filter covers it acknowledged it; ``"limits"`` keeps it per ``max_age`` (replayable).
    * ``max_age``: seconds an event may stay in the stream at most (``None``: no limit).
    * ``replicas``: stream replicas in a cluster.
    * ``ack_wait``: seconds before an unacknowledged delivery is redelivered (slow
      handlers are kept alive with in-progress acks, so this bounds crash recovery).
    * ``lane_ack_wait``: the same for a group's key lanes (``None``: ``ack_wait`` or 10 s,
      whichever is shorter). A lane has one event in flight, so this also bounds how
      long a lane waits for an event lost with a connection before it moves on.
    * ``max_deliveries``: deliveries without acknowledgement (crashed or stuck consumers,
      failed deliveries) after which the event goes to ``deadletter.<topic>`` instead of
      the handler; the name every transport uses. ``max_deliver``, JetStream's name, is
      accepted too (and read back as a property).
    * ``max_ack_pending``: unkeyed events in flight per subscription (across all group
      members); keyed events of a group are in flight one per lane.
    * ``partitions``: key lanes: events with a key go to lane ``crc32(key) % partitions``,
      which a group consumes strictly in order. Every program sharing a stream must use
      the same number (it is recorded in the stream's description and checked).
    * ``inactive_threshold``: seconds after which an ungrouped subscription's consumer is
      deleted once its process stopped listening (exited, or cut off that long: with
      interest retention, what was published meanwhile is then lost to it).
    * ``publish_timeout``: seconds a ``publish`` may take in all, retrying across a
      reconnect, before raising :class:`~pepperpy.event.TransportError`.
    * ``connect_timeout``: seconds ``start()`` may take in all to reach the server before
      raising :class:`~pepperpy.event.TransportError` (later disconnects retry forever);
      also the longest ``close()`` waits for an unresponsive server at each step.
    * ``reconnect_wait``: seconds between connection attempts, 0.05 to 300.
    * ``ping_interval``: seconds between the client's pings to the server; also how
      often a transport with subscriptions checks that their stream is still there.
      0.1 to 600.

    ``ack_wait``, ``lane_ack_wait``, ``inactive_threshold`` and ``max_age`` take at most
    :data:`MAX_DURATION` seconds (JetStream's int64 nanoseconds).
    * ``max_outstanding_pings``: pings left unanswered before the connection counts as
      dead and is replaced: a silent link (half-open, a partition without a reset) is
      given up ``ping_interval * max_outstanding_pings`` to
      ``ping_interval * (max_outstanding_pings + 1)`` seconds after it went silent.
      1 to 100.
    * ``tls_ca``: file of the CA certificate(s) (PEM) the server's certificate must be
      signed by, in place of the system's (the nats CLI's ``--tlsca``).
    * ``tls_cert`` and ``tls_key``: files of the client certificate (PEM) and its
      private key (unencrypted), for a server that requires one (mutual TLS; the nats
      CLI's ``--tlscert`` and ``--tlskey``).
    * ``tls_hostname``: the name the server's certificate must be for, when it is not
      the URL's host (nats-py's ``tls_hostname``).

    Any TLS setting (these, or the transport's ``tls=`` context) makes TLS required
    of every server, as a ``tls://`` URL does.
    """

    stream: str = "PEPPERPY_EVENTS"
    prefix: str = "pepperpy"
    retention: str = "interest"
    max_age: float | None = None
    replicas: int = 1
    ack_wait: float = 30.0
    lane_ack_wait: float | None = None
    max_deliveries: int = 5
    max_ack_pending: int = 1000
    partitions: int = 8
    inactive_threshold: float = 30.0
    publish_timeout: float = 20.0
    connect_timeout: float = 5.0
    reconnect_wait: float = 0.5
    ping_interval: float = 5.0
    max_outstanding_pings: int = 2
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_hostname: str | None = None

    def __post_init__(self) -> None:
        # a value of the wrong type is a TypeError, a str that is no name a ConfigurationError
        stream = f"invalid JetStream stream name {self.stream!r}: use letters, digits, '-' or '_'"
        if not isinstance(self.stream, str):
            raise TypeError(stream)
        if not _STREAM_NAME.fullmatch(self.stream):
            raise ConfigurationError(stream)
        check_prefix(self.prefix)
        for name in TLS_OPTIONS:
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise TypeError(f"{name} must be a str, got {type(value).__name__}")
            if value is not None and not value.strip():
                raise ConfigurationError(f"{name} is empty: give a {_TLS_WHAT[name]}")
        retention = f"retention must be one of {_RETENTIONS}, got {self.retention!r}"
        if not isinstance(self.retention, str):
            raise TypeError(retention)
        if self.retention not in _RETENTIONS:
            raise ConfigurationError(retention)
        for name in (
            "ack_wait",
            "inactive_threshold",
            "publish_timeout",
            "connect_timeout",
            "reconnect_wait",
            "ping_interval",
        ):
            check_seconds(getattr(self, name), name)
        check_seconds_ranges(SECONDS_RANGES, lambda name: float(getattr(self, name)))
        for name in ("max_age", "lane_ack_wait"):
            if getattr(self, name) is not None:
                check_seconds(getattr(self, name), name)
        for name in _NANOSECOND_OPTIONS:
            value = getattr(self, name)
            if value is not None and value > MAX_DURATION:
                raise ConfigurationError(
                    f"{name} must be at most {MAX_DURATION:,} seconds (JetStream holds it "
                    f"as int64 nanoseconds), got {value!r}"
                )
        for name in (
            "replicas",
            "max_deliveries",
            "max_ack_pending",
            "partitions",
            "max_outstanding_pings",
        ):
            shown = " (or max_deliver)" if name == "max_deliveries" else ""
            check_count(getattr(self, name), f"{name}{shown}")
        fewest, most = PINGS_RANGE
        if not fewest <= self.max_outstanding_pings <= most:
            raise ConfigurationError(
                f"max_outstanding_pings must be from {fewest} to {most} (the pings left "
                "unanswered before a silent connection is given up: a silent connection "
                "is replaced after that many ping_intervals), got "
                f"{self.max_outstanding_pings!r}"
            )
        if self.partitions > MAX_PARTITIONS:
            raise ConfigurationError(
                f"partitions must be at most {MAX_PARTITIONS} (each is a consumer per group), "
                f"got {self.partitions}"
            )

    @property
    def max_deliver(self) -> int:
        """``max_deliveries`` under JetStream's name (for code written before it had one)."""
        return self.max_deliveries

    @property
    def lane_wait(self) -> float:
        """``ack_wait`` of the key lanes: ``lane_ack_wait``, by default ``min(ack_wait, 10)``."""
        if self.lane_ack_wait is not None:
            return self.lane_ack_wait
        return min(self.ack_wait, LANE_ACK_WAIT)


_FIELD_TYPES = {f.name: f.type for f in fields(NatsOptions)}


def parse_url(url: str, given: Mapping[str, Any]) -> tuple[list[str], NatsOptions, str | None]:
    """Split ``nats://host:port?stream=S&prefix=P`` into server URLs, options and token.

    A cluster is a comma-separated list (``nats://a:4222,nats://b:4222?stream=S``); the
    client picks any and fails over. ``given``, the keyword arguments the transport was
    given explicitly, win over query parameters whatever their values, as on Redis;
    unknown names are refused, and one option given under both its names.

    ``?token=`` is the server's auth token, sent to every server of the list: the other
    way to give one than ``nats://TOKEN@host`` (both are secrets, shown as ``***``). It
    is no :class:`NatsOptions` field, so the options' repr never holds it; giving it in
    both forms is refused rather than one silently ignored (nats-py would send the
    query's).
    """
    if not isinstance(url, str):
        raise TypeError(f"the NATS transport needs a URL string, got {not_a_url(url)}")
    servers: list[str] = []
    values: dict[str, Any] = {}
    token: str | None = None
    queries: list[str] = []
    for text in url.split(","):
        try:
            parts = urlsplit(text.strip())
        except ValueError as exc:  # an unclosed IPv6 bracket
            raise ConfigurationError(f"bad NATS URL {_shown(url)!r}: {exc}") from None
        if parts.scheme not in ("nats", "tls") or not parts.hostname:
            raise ConfigurationError(f"not a NATS URL: {_shown(url)!r} (expected nats://host:port)")
        try:
            port = parts.port
        except ValueError:  # not a number, or over 65535: nats-py fails only at start()
            port = 0
        if port == 0 and parts.netloc.rpartition("]")[2].rpartition(":")[1]:
            raise ConfigurationError(
                f"bad port in the NATS URL {_shown(url)!r}: a port is a number from 1 to 65535"
            )
        if parts.path not in ("", "/"):  # nats-py ignores it: a stream meant there is not
            raise ConfigurationError(
                f"the NATS URL {_shown(url)!r} has a path {parts.path!r}, which NATS does not "
                "use: give the JetStream stream as ?stream=NAME (and a subject prefix of its "
                "own as &prefix=name)"
            )
        servers.append(urlunsplit((parts.scheme, parts.netloc, "", "", "")))
        queries.append(parts.query)
    for name, raw in query_options(queries, where="the NATS URL"):
        if name == "token":
            if not raw:
                raise ConfigurationError("the NATS URL's token= is empty")
            token = raw
            continue
        kind = _FIELD_TYPES.get(SYNONYMS.get(name, name))
        if kind is None:  # nats-py takes nothing from the query: all of it is ours
            raise unknown_option(name, where="the NATS URL", ours=_FIELD_TYPES)
        values[name] = _convert(name, raw, str(kind))
    values = common_names(values, SYNONYMS, where="the NATS URL")
    if token is not None and any(urlsplit(server).username for server in servers):
        raise ConfigurationError(
            f"the NATS URL {_shown(url)!r} gives credentials twice, as token= and as "
            "user@host: give the token one way"
        )
    return servers, replace(NatsOptions(), **{**values, **given}), token


def _shown(url: str) -> str:
    """``url`` for an error message: each server's password hidden (a cluster's URL is a
    comma-separated list, which ``redact_url`` would read as one URL)."""
    return ",".join(redact_url(server) for server in url.split(","))


def _convert(name: str, raw: str, kind: str) -> Any:
    """``raw``, the URL's text for option ``name``, as the option's type: a value that
    is none is a :class:`ConfigurationError` like any other bad text of the URL's (``""``
    or ``"none"`` means "no limit" only for an option that may be ``None``)."""
    if raw in ("", "none") and "None" in kind:
        return None
    # ASCII only (see _url_options): int() and float() read "1_6" as 16, and took spaces,
    # other scripts' digits and, for seconds, inf and nan
    try:
        if kind.startswith("int"):
            return whole_number(raw)
        if kind.startswith("float"):
            return decimal_seconds(raw)
    except ValueError:
        takes = WHOLE_TAKES if kind.startswith("int") else SECONDS_TAKES
        raise ConfigurationError(
            f"bad {name}={raw!r} in the NATS URL: {name} must be {takes}"
        ) from None
    return raw
