"""The broker refusing the transport's reconnections: its credentials (a password changed
under a running service, a user deleted), its virtual host (permissions taken away), or
the exchanges and queues it restores (their configure permission taken away).

``start()`` fails at once on such a refusal (``_connect.may_come_up``). Once running, the
robust connection retries it every ``reconnect_interval`` after the connection was lost,
and each refused attempt was a WARNING of aio-pika's (``Connection attempt to ... failed:
ACCESS_REFUSED ...``), once a second for as long as it lasted, beside the transport's
"lost the connection" WARNING that said nothing of credentials. Now the first refusal is
one ERROR of the transport's saying so (the URL's password hidden), the outage stays
open (``health()`` is not ready; ``outage()`` counts from the loss), the drivers'
records of the refused attempts are DEBUG, and the attempts back off, doubling from
``reconnect_interval`` up to :data:`REFUSED_BACKOFF_MAX` seconds between two (or
``reconnect_interval``, when that is longer: a refused attempt never comes sooner than
any other), until one is let in: the usual INFO then says the connection is back, and
the interval is ``reconnect_interval`` again.

A refusal is told by the driver's exception class and the reply code the broker closed
with, never by the wording of its reply (which changes between releases): aiormq's
``AuthenticationError`` (no common login mechanism) and ``ProbableAuthenticationError``
(a ``Connection.Close`` with reply code 403 in reply to the login) are the credentials;
``ChannelAccessRefused`` (a ``Channel.Close`` with reply code 403: an exchange or queue
the user may not declare) and the ``Connection.Close`` in reply to ``Connection.Open``
(see ``_connect.vhost_refusal``) are access.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, NamedTuple
from urllib.parse import unquote, urlsplit

from ..._bus_logging import log_fields
from ..base import ACCESS_REFUSED, CREDENTIALS_REFUSED, TLS_REFUSED
from ._connect import tls_reason, vhost_refusal

__all__ = ["REFUSED_BACKOFF_MAX", "Refusal", "Refusals", "entity_refusal", "refusal"]

logger = logging.getLogger("pepperpy.event.transports.rabbitmq")

#: the longest pause (seconds) between two reconnection attempts the broker refuses
REFUSED_BACKOFF_MAX = 15.0


#: what the transport's records say of a broker that refuses its connection
REFUSES = "refuses the transport's connection"


class Refusal(NamedTuple):
    """The broker said no: ``kind`` is ``Transport.outage_reason``'s (credentials or
    access refused), ``reason`` what it said, with what to check; ``lead`` what the
    records say the broker does (a TLS handshake that failed for good is no answer of the
    broker's, but as final: ``kind`` tls refused, and retried as sparingly)."""

    kind: str
    reason: str
    lead: str = REFUSES


def refusal(url: str, error: object) -> Refusal | None:
    """The broker's refusal a connection attempt (or the restore of its channels) to
    ``url`` failed with, as ``error``; None for any other failure (the broker could not
    be reached, say)."""
    errors = sys.modules.get("aiormq.exceptions")
    if errors is None or not isinstance(error, BaseException):
        return None
    if isinstance(error, errors.AuthenticationError | errors.ProbableAuthenticationError):
        said = str(error) or type(error).__name__
        return Refusal(CREDENTIALS_REFUSED, f"{said}; check the user and password in its URL")
    entity = entity_refusal(url, error)
    if entity is not None:
        return Refusal(ACCESS_REFUSED, f"restoring the channels: {entity}")
    vhost = vhost_refusal(url, error)
    if vhost is not None:
        return Refusal(ACCESS_REFUSED, vhost)
    tls = tls_reason(url, error)
    return None if tls is None else Refusal(TLS_REFUSED, tls, "cannot be reconnected to over TLS")


def entity_refusal(url: str, error: BaseException) -> str | None:
    """What the broker said in refusing ``url``'s user an exchange or queue (a channel
    closed with reply code 403, aiormq's ``ChannelAccessRefused``: no configure, write or
    read permission that matches it); None if ``error`` is no such refusal."""
    errors = sys.modules.get("aiormq.exceptions")
    if errors is None or not isinstance(error, errors.ChannelAccessRefused):
        return None
    said = str(error.args[0]) if error.args else "no reason given"
    user = urlsplit(url).username
    whose = f"user {unquote(user)!r}" if user else "the user"
    return (
        f"the broker refuses {whose} access: {said} (reply code 403); check the "
        f"permissions of {whose} (rabbitmqctl list_user_permissions)"
    )


class Refusals:
    """The refusals of one transport's reconnections (see the module): logs the first of
    an outage, and sets how long the robust connection waits before the next attempt."""

    def __init__(self, url: str, reconnect_interval: float) -> None:
        self.url = url
        self.reconnect_interval = reconnect_interval
        #: the longest pause between two refused attempts: never below the usual one
        #: (``reconnect_interval`` takes up to 300 s; 15 s made a refused attempt come
        #: sooner than an unreachable broker's)
        self.longest = max(REFUSED_BACKOFF_MAX, reconnect_interval)
        #: what the broker said at the first refusal of the open outage; None: none
        self.reason: str | None = None
        #: refused attempts in the open outage
        self.attempts = 0
        #: the latest refusal's reason (``Transport.outage_reason``) and message
        self.latest: tuple[str, str] | None = None
        #: what the first refusal of the open outage said the broker does
        self.lead = REFUSES

    def refused(self, refused: Refusal, connection: Any, shown: str) -> None:
        """An attempt of the robust ``connection`` was ``refused``; ``shown``: the URL
        without its password."""
        kind, reason, lead = refused
        self.attempts += 1
        interval = getattr(connection, "reconnect_interval", None)
        if isinstance(interval, int | float):  # aio-pika reads it before each pause
            connection.reconnect_interval = min(
                max(interval * 2, self.reconnect_interval), self.longest
            )
        self.latest = (kind, f"RabbitMQ at {shown} {lead}: {reason}")
        if self.reason is not None:
            logger.debug("RabbitMQ at %s refused a reconnection again: %s", shown, reason)
            return
        self.reason, self.lead = reason, lead
        logger.error(
            "RabbitMQ at %s %s: %s. The transport keeps "
            "trying, backing off up to %gs; further refusals are logged at DEBUG",
            shown,
            lead,
            reason,
            self.longest,
            extra=log_fields("outage", transport=shown, reason=reason),
        )

    def note(self) -> str:
        """What an error about waiting for the connection adds while the broker refuses
        it (empty otherwise)."""
        if self.reason is None:
            return ""
        return f"; the broker {self.lead}: {self.reason}"

    def over(self, connection: Any) -> int:
        """The robust ``connection`` is back: reconnect every ``reconnect_interval``
        again; returns how many attempts the broker had refused."""
        refused, self.reason, self.attempts, self.latest = self.attempts, None, 0, None
        if refused and hasattr(connection, "reconnect_interval"):
            connection.reconnect_interval = self.reconnect_interval
        return refused
