"""AMQP heartbeats: the transport's default, and how soon a silent connection is given up.

aiormq sends the ``heartbeat`` of the URL (60 s when it has none) and gives a connection
up after ``(heartbeat + 1) * 3`` seconds without a frame from the broker: 183 s by
default, all of which a network partition that resets nothing left ``health()`` ready
and the subscriptions receiving nothing. The transport instead asks for
:data:`DEFAULT_HEARTBEAT` unless the URL names a ``heartbeat`` (``heartbeat=0`` turns
them off, as for aio-pika), and gives a connection up after :data:`GRACE_HEARTBEATS`
heartbeat timeouts without a frame (a live broker sends one every half timeout, so that
is four missed in a row): 30 s with the default. aiormq checks every half timeout, so the
outage opens 23 to 38 s after a partition began, instead of 3 to 3.2 minutes.

The grace is aiormq's own (``is_connection_was_stuck``), set on each of its connections
(its private attribute; the ``_handover`` module reads its private last frame time too).
With an aiormq that lacks it, the default heartbeat still applies, with aiormq's grace.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

if TYPE_CHECKING:
    from aio_pika.abc import AbstractRobustConnection

__all__ = [
    "DEFAULT_HEARTBEAT",
    "GRACE_HEARTBEATS",
    "grace_of",
    "tighten",
    "watch_heartbeats",
    "with_heartbeat",
]

logger = logging.getLogger("pepperpy.event.transports.rabbitmq")

#: seconds: the heartbeat timeout the transport asks for when its URL names none
DEFAULT_HEARTBEAT = 15
#: heartbeat timeouts without a frame from the broker after which a connection is given up
GRACE_HEARTBEATS = 2
#: aiormq's (name-mangled) attribute holding a connection's grace, in seconds
_GRACE = "_Connection__heartbeat_grace_timeout"


def with_heartbeat(url: str) -> tuple[str, int]:
    """``url`` with ``heartbeat=`` :data:`DEFAULT_HEARTBEAT` added to its query unless it
    has one, and the heartbeat it then asks for (0: none). The query was checked
    (``_config.split_options``): a ``heartbeat`` in it is a whole number."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    given = [value for name, value in query if name == "heartbeat"]
    if given:
        return url, int(given[-1])
    query.append(("heartbeat", str(DEFAULT_HEARTBEAT)))
    return urlunsplit(parts._replace(query=urlencode(query))), DEFAULT_HEARTBEAT


def tighten(connection: AbstractRobustConnection | Any) -> None:
    """Give the current aiormq connection of the robust ``connection`` up after
    :data:`GRACE_HEARTBEATS` heartbeat timeouts without a frame (see the module)."""
    underlay = getattr(getattr(connection, "transport", None), "connection", None)
    heartbeat = getattr(underlay, "heartbeat_timeout", None)
    if not isinstance(heartbeat, int) or heartbeat <= 0 or not hasattr(underlay, _GRACE):
        return
    setattr(underlay, _GRACE, GRACE_HEARTBEATS * heartbeat)


def watch_heartbeats(connection: AbstractRobustConnection) -> None:
    """:func:`tighten` ``connection`` now and each time it has reconnected."""
    tighten(connection)
    connection.reconnect_callbacks.add(lambda sender, *_: tighten(sender))


def grace_of(underlay: Any) -> tuple[float, str] | None:
    """The seconds without a frame after which the aiormq connection ``underlay`` is given
    up, and how they are reckoned; None if it has no heartbeats (or is not aiormq's)."""
    heartbeat = getattr(underlay, "heartbeat_timeout", None)
    if not isinstance(heartbeat, int) or heartbeat <= 0:
        return None
    grace = getattr(underlay, _GRACE, None)
    if isinstance(grace, int | float) and grace == GRACE_HEARTBEATS * heartbeat:
        return float(grace), f"{GRACE_HEARTBEATS} * heartbeat with heartbeat={heartbeat}"
    multiplier = getattr(underlay, "HEARTBEAT_GRACE_MULTIPLIER", None)
    if not isinstance(multiplier, int | float):
        return None
    return (
        float((heartbeat + 1) * multiplier),
        f"(heartbeat + 1) * {multiplier:g} with heartbeat={heartbeat}",
    )
