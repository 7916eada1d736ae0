"""Settings of the RabbitMQ transport: wire constants and options (keywords or URL query)."""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from ..._errors import ConfigurationError
from ..._options import check_count
from ..._redact import redact_url
from ..._seconds import check_seconds
from ..._text import DEAD_LETTER_PREFIX
from .._url_options import (
    DECIMAL,
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

#: content type of a structured-mode CloudEvent (CloudEvents AMQP binding)
CONTENT_TYPE = "application/cloudevents+json"
#: header carrying the lane (0..LANES-1) that picks a group's partition
LANE_HEADER = "pepperpy-lane"
LANES = 64
#: header of a group's ping: an empty message a member publishes to a partition queue
#: to learn who is active on it (whoever receives it, see ``Group``), never handled
PING_HEADER = "pepperpy-ping"
#: what the headers of the transport's own messages start with: an empty message with
#: one this version does not know is a control message of a later version (see
#: ``_consumer._is_control``), acknowledged unhandled
CONTROL_PREFIX = "pepperpy-"
#: a ping nobody consumed (the group has no member left) expires after this many seconds
PING_EXPIRY = 60.0
#: AMQP limits routing and binding keys to 255 bytes (a short string)
MAX_KEY_BYTES = 255
#: the longest topic, in UTF-8 bytes: its dead letter, ``deadletter.<topic>``, is
#: published with a routing key too, so the prefix must fit in the 255 bytes
MAX_TOPIC_BYTES = MAX_KEY_BYTES - len(DEAD_LETTER_PREFIX)
#: AMQP's prefetch-count is a 16-bit number
MAX_PREFETCH = 65535
#: the longest ``x-expires`` RabbitMQ takes, in milliseconds (ten years); a longer one
#: fails the queue's declaration with ``PRECONDITION_FAILED ... value_too_large``
MAX_EXPIRES_MS = 315_360_000_000
#: what aio-pika's AMQP codec (pamqp) accepts in queue and exchange names; anything else
#: raises a bare ValueError when the name is sent
AMQP_NAME = re.compile(r"[a-zA-Z0-9_.:@#,/+ -]*")
#: the longest exchange name pamqp sends (queue names may have 255 bytes)
MAX_EXCHANGE_NAME = 127
#: how long a finished delivery's ack may wait to share a frame with others (seconds)
ACK_DELAY = 0.001
#: a group partition's release mark: queue ``<partition queue>.released``, declared by a
#: member that hands the partition over with nothing in progress (see _handover), and
#: expiring this many seconds after that when nobody took it
RELEASED = ".released"
RELEASE_MARK_EXPIRY = 30.0
#: a group's presence queue, ``<base>.presence``: each member process holds a consumer on
#: it, so its consumer count is the number of members (see ``Group``). It is auto-delete,
#: which only deletes a queue that had a consumer: declared by a member that failed or
#: closed before it consumed (a subscribe failing half-way, a reconnect's restore cut
#: short), it stayed for good. ``x-expires`` deletes it this many seconds after its last
#: use; a queue that has a consumer never expires.
PRESENCE = ".presence"
PRESENCE_EXPIRY = 60.0
#: a group's ping-aware presence queue, ``<base>.pings``: like ``.presence`` (and with
#: the same lifetime), but only members that answer pings consume it. Fewer consumers on
#: it than on ``.presence`` means members of an older version, which would log each
#: ping as a malformed message: nobody pings while they run (see ``Group._ping``)
PINGS = ".pings"
#: the presence queue of versions before ``.presence`` (their members understand no ping)
OLD_PRESENCE = ".members"
#: a group's layout mark, ``<base>.layout``: an empty durable queue declared with
#: ``x-max-length`` set to the group's partition count. The broker refuses to declare it
#: again with another value (PRECONDITION_FAILED), whatever the timing, so of two members
#: with different counts that start at the same moment the second is refused
LAYOUT = ".layout"
PERSISTENT = 2
#: RabbitMQ's default ``max_message_size`` (bytes of a message's body): 16 MiB since 4.0,
#: 128 MiB from 3.8 to 3.13. The broker closes the channel a larger message comes on.
DEFAULT_MAX_MESSAGE_SIZE = 16 * 1024 * 1024
DEFAULT_MAX_MESSAGE_SIZE_BEFORE_4 = 128 * 1024 * 1024
#: the largest ``max_message_size`` RabbitMQ can be set to (512 MiB)
MOST_MAX_MESSAGE_SIZE = 512 * 1024 * 1024


@dataclass(frozen=True)
class RabbitMQOptions:
    """The RabbitMQ transport's options and their defaults, the one source of them (the
    transport's keywords show them, through ``default(RabbitMQOptions.<field>)``, and the
    URL's query overrides them). What each means: see :class:`RabbitMQTransport`."""

    exchange: str = "pepperpy.events"
    prefetch: int = 128
    partitions: int = 12
    queue_type: str = "quorum"
    # well above the deliveries a group's rebalancing between processes can cause (see
    # docs/transport-rabbitmq.md, "Poison messages")
    max_deliveries: int = 10
    rebalance_interval: float = 1.0
    ungrouped_expiry: float = 60.0
    connect_timeout: float = 10.0
    reconnect_interval: float = 1.0
    handover_grace: float = 5.0
    # None: the default of the broker's version (see broker_message_limit)
    max_message_size: int | None = None


_DEFAULTS: dict[str, Any] = asdict(RabbitMQOptions())
#: RabbitMQ's names of options that have a common name on every transport: accepted
#: as keywords and in the URL, meaning the same
SYNONYMS = {"delivery_limit": "max_deliveries"}
_SECONDS = (
    "rebalance_interval",
    "ungrouped_expiry",
    "connect_timeout",
    "reconnect_interval",
    "handover_grace",
)
#: seconds options that may be 0 (to turn something off)
_MAY_BE_ZERO = ("handover_grace",)
#: the range of the seconds options that had none, and why each end (all were taken up
#: to any finite number, and ``1e12`` silently turned something off for good)
SECONDS_RANGES: dict[str, SecondsRange] = {
    # the pause between connection attempts: ``1e-9`` retried a lost connection
    # thousands of times a second, ``1e12`` never in practice once it was lost. Five
    # minutes is Redis's max_backoff's bound, and Kubernetes' longest crash-loop pause
    "reconnect_interval": (
        0.05,
        300.0,
        "the pause between connection attempts: a lost connection waits that long",
    ),
    # ``1e12`` never balanced a group: a member that joined stayed idle; ``1e-9`` counted
    # the members and pinged every partition back to back, flooding them with pings
    "rebalance_interval": (
        0.01,
        3600.0,
        "the pause between checks that balance a group: a member that joins waits that long",
    ),
    # ``1e12`` left the keys of a member that lost its connection unhandled for good.
    # A day is longer than any handler a member may still be running
    "handover_grace": (
        0.0,
        86_400.0,
        "the wait of keys taken over from a member that lost its connection",
    ),
}


def _whole(least: int, most: int | None = None) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        if (
            re.fullmatch(r"[0-9]+", value)
            and least <= int(value)
            and (most is None or int(value) <= most)
        ):
            return None
        upper = f" and <= {most}" if most is not None else ""
        return f"must be a whole number >= {least}{upper}"

    return check


def _seconds(value: str) -> str | None:
    # decimal notation only: float() took "1_0", " 1", other scripts' digits
    if DECIMAL.fullmatch(value) and math.isfinite(float(value)):
        return None
    return "must be a finite number of seconds >= 0, in decimal digits (0.25)"


def _one_of(*choices: str) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        if value.lower() in choices:
            return None
        return f"must be one of {', '.join(choices)}"

    return check


def _base64(value: str) -> str | None:
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return "must be base64 (of the CA certificates, in DER)"
    return None


def _text(value: str) -> str | None:
    return None


#: what aio-pika (9.4 to 10.x) and aiormq read from an AMQP URL's query, each with a check
#: of its value: the driver reads a bad value silently as another one (``heartbeat=soon``
#: as 0, which turns heartbeats off; ``fail_fast=yes please`` as false; any
#: ``no_verify_ssl`` other than ``0``, ``no_verify_ssl=false`` included, as "do not
#: verify the broker's certificate")
DRIVER_OPTIONS: dict[str, Callable[[str], str | None]] = {
    "heartbeat": _whole(0, 65534),  # seconds; 0: none
    "timeout": _whole(0),
    "name": _text,  # the connection's name in the broker (default: see the transport)
    "auth": _one_of("plain", "external"),
    "cafile": _text,
    "capath": _text,
    "cadata": _base64,
    "keyfile": _text,
    "certfile": _text,
    "no_verify_ssl": _one_of("0", "1"),  # 1: do not verify the broker's certificate
    "interleave": _whole(0),
    "happy_eyeballs_delay": _seconds,
    "fail_fast": _one_of(
        "1",
        "0",
        "true",
        "false",
        "yes",
        "no",
        "y",
        "n",
        "on",
        "off",
        "enable",
        "disable",
        "enabled",
        "disabled",
    ),
}


def split_options(
    url: str, given: dict[str, Any], driver_names: Collection[str] = ()
) -> tuple[str, dict[str, Any]]:
    """Take our options out of the URL's query; merge them under ``given`` and defaults.

    The URL's address is checked here, and the rest of its query against
    :data:`DRIVER_OPTIONS` (and ``driver_names``: further names the installed aio-pika
    takes, passed on unchecked), so that a mistake is a :class:`ConfigurationError`
    naming it when the transport is made, not a driver's error (or nothing) later.
    """
    if not isinstance(url, str):
        raise TypeError(f"RabbitMQ needs an amqp:// or amqps:// URL, got {not_a_url(url)}")
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # an unclosed IPv6 bracket
        raise ConfigurationError(f"bad RabbitMQ URL {redact_url(url)}: {exc}") from None
    if parts.scheme.lower() not in ("amqp", "amqps"):
        raise ConfigurationError(
            f"RabbitMQ needs an amqp:// or amqps:// URL, got {redact_url(url)!r}"
        )
    _check_port(parts.netloc, url)
    _check_host(parts.hostname, url)
    ours: dict[str, Any] = {}
    rest: list[tuple[str, str]] = []
    for name, value in query_options([parts.query], where="the RabbitMQ URL"):
        if SYNONYMS.get(name, name) not in _DEFAULTS:
            check = DRIVER_OPTIONS.get(name)
            if check is None and name not in driver_names:
                raise unknown_option(
                    name,
                    where="the RabbitMQ URL",
                    ours=_DEFAULTS,
                    driver="an aio-pika connection option",
                    theirs={*DRIVER_OPTIONS, *driver_names} - set(_DEFAULTS),
                )
            why = check(value) if check is not None else None
            if why is not None:
                raise ConfigurationError(f"URL option {name}={value!r} {why}")
            rest.append((name, value))
        elif name in ("exchange", "queue_type"):
            ours[name] = value
        else:
            # ASCII only (see _url_options): int() and float() read "1_6" as 16, and took
            # spaces, other scripts' digits and, for seconds, inf and nan
            seconds = name in _SECONDS
            try:
                ours[name] = decimal_seconds(value) if seconds else whole_number(value)
            except ValueError:
                takes = SECONDS_TAKES if seconds else WHOLE_TAKES
                raise ConfigurationError(
                    f"bad {name}={value!r} in the RabbitMQ URL: {name} must be {takes}"
                ) from None
    ours = common_names(ours, SYNONYMS, where="the RabbitMQ URL")
    options = {**_DEFAULTS, **ours, **given}
    check_options(options)
    return urlunsplit(parts._replace(query=urlencode(rest))), options


def _check_port(netloc: str, url: str) -> None:
    """Refuse a port the driver would fail on with a bare ``ValueError`` (or take as 0)."""
    port = netloc.rpartition("@")[2].rpartition("]")[2].partition(":")[2]  # [::1]:5672 too
    if port and not (re.fullmatch(r"[0-9]{1,5}", port) and 1 <= int(port) <= 65535):
        raise ConfigurationError(
            f"bad port {port!r} in the RabbitMQ URL {redact_url(url)}: a port is a number "
            "from 1 to 65535"
        )


def _check_host(host: str | None, url: str) -> None:
    """Refuse a URL without a host, ``amqp://:5672/`` or ``amqp:///``: aiormq connects
    to localhost then, so ``amqp://guest:guest@${RABBITMQ_HOST}:5672/`` with the variable
    unset reached whatever broker this machine runs, silently, or was retried as an
    unreachable broker for ``connect_timeout``. ``localhost`` is written out."""
    if not host:
        raise ConfigurationError(
            f"the RabbitMQ URL {redact_url(url)!r} names no host: give it "
            "(amqp://HOST:5672/, amqp://localhost:5672/ for this machine)"
        )


def check_options(options: dict[str, Any]) -> None:
    """Check the merged ``options`` (seconds made floats): a value of the wrong type (a
    ``bool`` for a count or seconds included) raises :class:`TypeError`, a value of the
    right type that is not allowed :class:`ConfigurationError`, with one message each."""
    exchange = options["exchange"]
    refused = (
        f"exchange must be a non-empty name of at most {MAX_EXCHANGE_NAME} characters"
        f" among ASCII letters, digits and '-_.:@#,/+ ', got {exchange!r}"
    )
    if not isinstance(exchange, str):
        raise TypeError(refused)
    if not exchange or len(exchange) > MAX_EXCHANGE_NAME or not AMQP_NAME.fullmatch(exchange):
        raise ConfigurationError(refused)
    if exchange.startswith("amq."):
        raise ConfigurationError(f"exchange names starting with 'amq.' are reserved: {exchange!r}")
    for name, least in (("prefetch", 1), ("partitions", 1), ("max_deliveries", 0)):
        shown = " (or delivery_limit)" if name == "max_deliveries" else ""
        check_count(options[name], f"{name}{shown}", least=least)
    if options["prefetch"] > MAX_PREFETCH:
        raise ConfigurationError(
            f"prefetch must be at most {MAX_PREFETCH} (AMQP's prefetch-count is 16-bit), "
            f"got {options['prefetch']}"
        )
    if options["partitions"] > LANES:
        raise ConfigurationError(f"partitions must be at most {LANES}, got {options['partitions']}")
    queue_type = f"queue_type must be 'quorum' or 'classic', got {options['queue_type']!r}"
    if not isinstance(options["queue_type"], str):
        raise TypeError(queue_type)
    if options["queue_type"] not in ("quorum", "classic"):
        raise ConfigurationError(queue_type)
    size = check_count(options["max_message_size"], "max_message_size", optional=True)
    if size is not None and size > MOST_MAX_MESSAGE_SIZE:
        raise ConfigurationError(
            f"max_message_size must be at most {MOST_MAX_MESSAGE_SIZE:,} bytes (512 MiB, the "
            f"most RabbitMQ takes), got {size:,}"
        )
    for name in _SECONDS:
        options[name] = check_seconds(options[name], name, zero=name in _MAY_BE_ZERO)
    check_seconds_ranges(SECONDS_RANGES, options.__getitem__)
    expiry = options["ungrouped_expiry"]
    if not 1 <= expiry_ms(expiry) <= MAX_EXPIRES_MS:  # RabbitMQ's range of x-expires
        raise ConfigurationError(
            f"ungrouped_expiry must be from 0.001 to {MAX_EXPIRES_MS // 1000:,} seconds "
            f"(RabbitMQ's x-expires takes 1 ms to ten years), got {expiry!r}"
        )


def key_limit(text: str) -> int:
    """The most UTF-8 bytes of a topic or pattern: :data:`MAX_TOPIC_BYTES`, so that its
    dead letter's routing key fits too, or the whole :data:`MAX_KEY_BYTES` for what may
    be a dead letter's (a dead letter is never dead-lettered again): a topic starting
    with ``deadletter.``, a pattern whose first token is ``deadletter`` or a wildcard."""
    head = text.partition(".")[0]
    if text.startswith(DEAD_LETTER_PREFIX) or head in ("*", "#"):
        return MAX_KEY_BYTES
    return MAX_TOPIC_BYTES


def too_long(text: str, what: str) -> str | None:
    """Why the topic or pattern ``text`` is too long for RabbitMQ, or None if it fits."""
    limit, size = key_limit(text), len(text.encode("utf-8", "surrogatepass"))
    if size <= limit:
        return None
    room = f", less the {DEAD_LETTER_PREFIX!r} of its dead letter" if limit < MAX_KEY_BYTES else ""
    return (
        f"{what} is {size} bytes long; RabbitMQ takes at most {limit} (AMQP's "
        f"{MAX_KEY_BYTES}-byte routing and binding keys{room})"
    )


def expiry_ms(seconds: float) -> int:
    """``ungrouped_expiry`` as the queue's ``x-expires``: whole milliseconds."""
    return int(seconds * 1000)


def broker_message_limit(server_properties: Mapping[str, Any]) -> tuple[int, str]:
    """The default ``max_message_size`` of the broker that sent ``server_properties`` (in
    its ``connection.start``), and words saying where it comes from, for an error.

    RabbitMQ before 4.0 takes 128 MiB; 4.0 and later, or a broker whose version cannot be
    read (another product, say), 16 MiB: the smaller, since a message over the broker's
    limit costs the channel it came on.
    """
    product, version = (_text_of(server_properties.get(key)) for key in ("product", "version"))
    major = re.match(r"[0-9]+", version)
    if product == "RabbitMQ" and major is not None:
        if int(major.group()) < 4:
            return DEFAULT_MAX_MESSAGE_SIZE_BEFORE_4, f"the default of RabbitMQ {version}"
        return DEFAULT_MAX_MESSAGE_SIZE, f"the default of RabbitMQ {version}"
    broker = f"{product} {version}".strip() or "a broker that did not say its version"
    return DEFAULT_MAX_MESSAGE_SIZE, f"RabbitMQ 4's default, assumed for {broker}"


def rabbitmq_major(server_properties: Mapping[str, Any]) -> int | None:
    """The major version of the RabbitMQ that sent ``server_properties``; None for
    another product, or a version that cannot be read."""
    product, version = (_text_of(server_properties.get(key)) for key in ("product", "version"))
    major = re.match(r"[0-9]+", version)
    return int(major.group()) if product == "RabbitMQ" and major is not None else None


def _text_of(value: object) -> str:
    """A server property as text (AMQP long strings may come as bytes)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) else ""
