"""Settings of the RabbitMQ transport: wire constants and options (keywords or URL query)."""

from __future__ import annotations

import math
import re
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..._errors import ConfigurationError

#: content type of a structured-mode CloudEvent (CloudEvents AMQP binding)
CONTENT_TYPE = "application/cloudevents+json"
#: header carrying the lane (0..LANES-1) that picks a group's partition
LANE_HEADER = "pepperpy-lane"
LANES = 64
#: AMQP limits routing and binding keys to 255 bytes (a short string)
MAX_KEY_BYTES = 255
#: what aio-pika's AMQP codec (pamqp) accepts in queue and exchange names; anything else
#: raises a bare ValueError when the name is sent
AMQP_NAME = re.compile(r"[a-zA-Z0-9_.:@#,/+ -]*")
#: the longest exchange name pamqp sends (queue names may have 255 bytes)
MAX_EXCHANGE_NAME = 127
#: how long a finished delivery's ack may wait to share a frame with others (seconds)
ACK_DELAY = 0.001
PERSISTENT = 2


_DEFAULTS: dict[str, Any] = {
    "exchange": "pepperpy.events",
    "prefetch": 128,
    "partitions": 12,
    "queue_type": "quorum",
    "delivery_limit": 10,
    "rebalance_interval": 1.0,
    "ungrouped_expiry": 60.0,
    "connect_timeout": 10.0,
    "reconnect_interval": 1.0,
}
_SECONDS = ("rebalance_interval", "ungrouped_expiry", "connect_timeout", "reconnect_interval")


def split_options(url: str, given: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Take our options out of the URL's query; merge them under ``given`` and defaults."""
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme.lower() not in ("amqp", "amqps"):
        raise ConfigurationError(f"RabbitMQ needs an amqp:// or amqps:// URL, got {url!r}")
    ours: dict[str, Any] = {}
    rest: list[tuple[str, str]] = []
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name not in _DEFAULTS:
            rest.append((name, value))
        elif name in ("exchange", "queue_type"):
            ours[name] = value
        else:
            try:
                ours[name] = float(value) if name in _SECONDS else int(value)
            except ValueError as exc:
                raise ConfigurationError(f"URL option {name}={value!r} is not a number") from exc
    options = {**_DEFAULTS, **ours, **given}
    check_options(options)
    return urlunsplit(parts._replace(query=urlencode(rest))), options


def check_options(options: dict[str, Any]) -> None:
    exchange = options["exchange"]
    if (
        not isinstance(exchange, str)
        or not exchange
        or len(exchange) > MAX_EXCHANGE_NAME
        or not AMQP_NAME.fullmatch(exchange)
    ):
        raise ConfigurationError(
            f"exchange must be a non-empty name of at most {MAX_EXCHANGE_NAME} characters"
            f" among ASCII letters, digits and '-_.:@#,/+ ', got {exchange!r}"
        )
    if exchange.startswith("amq."):
        raise ConfigurationError(f"exchange names starting with 'amq.' are reserved: {exchange!r}")
    for name, least in (("prefetch", 1), ("partitions", 1), ("delivery_limit", 0)):
        value = options[name]
        if not isinstance(value, int) or isinstance(value, bool) or value < least:
            raise ConfigurationError(f"{name} must be an int >= {least}, got {value!r}")
    if options["partitions"] > LANES:
        raise ConfigurationError(f"partitions must be at most {LANES}, got {options['partitions']}")
    if options["queue_type"] not in ("quorum", "classic"):
        raise ConfigurationError(
            f"queue_type must be 'quorum' or 'classic', got {options['queue_type']!r}"
        )
    for name in _SECONDS:
        value = options[name]
        if (
            not isinstance(value, int | float)
            or isinstance(value, bool)
            or not math.isfinite(value)
            or value <= 0
        ):
            raise ConfigurationError(
                f"{name} must be a finite number of seconds > 0, got {value!r}"
            )
        options[name] = float(value)
