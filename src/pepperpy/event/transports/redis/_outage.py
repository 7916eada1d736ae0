"""Connection loss as a transport's consumers and publishes meet it, logged once per outage.

Every consumer loop of a transport (each group partition worker, each member's lease
renewal, the listener, a lane catching up) meets a lost connection on its own. Logged
by each, one cut made a warning per partition worker: 707 warnings for 18 faults in a
soak of one group and one listener. An :class:`Outages` per transport logs the first
failure of an outage as a warning, the others at debug (naming the loop, the partition
and the error), and the end of the outage at info, once every loop that failed has
reached Redis again. A publish reports its failures as a one-off command and its
success as a loop that never failed: on a bus that only publishes, the next publish
that gets through ends the outage.
"""

from __future__ import annotations

import time
from collections.abc import Hashable
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from ..._bus_logging import log_fields
from ..base import CREDENTIALS_REFUSED, UNREACHABLE
from ._tls import TLS_REFUSED, tls_refusal
from ._wire import logger, pool_exhausted

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["Outages", "server_of"]


def server_of(url: str) -> str:
    """Where a client URL points, without its credentials: ``host:port`` or a socket path."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path or url
    host = parts.hostname or "localhost"
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{host}:{port or 6379}"


class Outages:
    """Whether the loops of one transport find Redis reachable, for logging only.

    A loop names itself with a key (anything hashable, its own for its lifetime) and
    reports each failure with :meth:`lost` and each success with :meth:`reached`; a loop
    that ends calls :meth:`forget`. Failures of one-off commands (acks, a trim) pass no
    key: they open an outage if none is open, and leave its end to the loops.

    An outage opens with the first failure (a warning) and ends (an info) at the first
    success once no loop that failed since it opened is still failing; a loop that never
    failed ends it only when none is failing any more. So one cut, however many loops
    meet it, is one warning and one info; a link that keeps breaking is one pair per
    time it came back.
    """

    __slots__ = (
        "_failing",
        "_failures",
        "_reason",
        "_refused",
        "_since",
        "_tls",
        "backoff",
        "refusals",
        "where",
    )

    def __init__(
        self, where: str, backoff: float, refusals: tuple[type[BaseException], ...] = ()
    ) -> None:
        self.where = where
        #: longest pause between reconnection attempts (``max_backoff``), for the warning
        self.backoff = backoff
        #: errors of credentials Redis refuses (``_wire.refusals``): an outage all the
        #: same (nothing is consumed), but an ERROR that says so, not "unreachable"
        self.refusals = refusals
        self._failing: set[Hashable] = set()
        self._since: float | None = None  # monotonic time the open outage began
        self._failures = 0
        #: why the open outage goes on (its latest failure), for ``health()``
        self._reason: tuple[str, str] | None = None
        #: whether Redis refused the credentials in the open outage (its ERROR logged)
        self._refused = False
        #: the TLS handshake failures (their causes) logged in the open outage
        self._tls: set[str] = set()

    @property
    def down(self) -> bool:
        """True while an outage is open."""
        return self._since is not None

    def down_for(self) -> float | None:
        """Seconds since the open outage began; None while none is open."""
        since = self._since
        return None if since is None else time.monotonic() - since

    def reason(self) -> tuple[str, str] | None:
        """Why the open outage goes on, from its latest failure: ``("credentials
        refused", ...)``, ``("tls refused", ...)`` or ``("unreachable", ...)`` and what
        Redis or the network said; None while none is open."""
        return self._reason if self._since is not None else None

    def lost(self, key: Hashable | None, who: str, error: BaseException) -> None:
        """``who`` (loop ``key``, or a one-off command) found Redis unreachable."""
        if key is not None:
            self._failing.add(key)
        reason = str(error) or type(error).__name__
        refused = isinstance(error, self.refusals)
        # a handshake that fails for good (a certificate no longer trusted): no network
        # outage, though redis-py raises it as one; retried all the same, since it can be
        # fixed on the server, but reported as what it is
        tls = None if refused else tls_refusal(error)
        if refused:
            self._reason = (
                CREDENTIALS_REFUSED,
                f"Redis at {self.where} refuses the transport's credentials ({reason})",
            )
        elif tls is not None:
            self._reason = (
                TLS_REFUSED,
                f"the TLS handshake with Redis at {self.where} fails: {tls}",
            )
        else:
            self._reason = (UNREACHABLE, f"Redis at {self.where} is unreachable ({reason})")
        if self._since is not None:
            self._failures += 1
            if tls is not None and tls in self._tls:
                logger.debug("%s: the TLS handshake with Redis fails (%s); retrying", who, tls)
                return
            if tls is None and (not refused or self._refused):
                logger.debug("%s: Redis unreachable (%s); reconnecting", who, reason)
                return
        else:
            self._since = time.monotonic()
            self._failures = 1
        if tls is not None:  # the ERROR once per cause and outage
            self._tls.add(tls)
            logger.error(
                "the TLS handshake with Redis at %s fails (met by %s): %s. The transport's "
                "consumers keep trying (it can be fixed on the server without restarting "
                "this process), backing off up to %gs. Further failures for this cause are "
                "logged at DEBUG",
                self.where,
                who,
                tls,
                self.backoff,
                extra=log_fields("outage", transport=self.where, met_by=who, reason=tls),
            )
            return
        if refused:  # a password rotated under a running service
            # the ERROR once per outage, also when the outage began as a cut connection
            # (the usual way: the reconnections after it are the ones refused)
            self._refused = True
            logger.error(
                "Redis at %s refuses the transport's credentials (%s, met by %s): check the "
                "user and password in its URL; the transport's consumers keep trying, "
                "backing off up to %gs. Further failures are logged at DEBUG",
                self.where,
                reason,
                who,
                self.backoff,
                extra=log_fields("outage", transport=self.where, met_by=who, reason=reason),
            )
            return
        logger.warning(
            "Redis at %s is unreachable (%s, met by %s); the transport reconnects, "
            "backing off up to %gs. Until Redis is reachable again, further failures are "
            "logged at DEBUG",
            self.where,
            reason,
            who,
            self.backoff,
            extra=log_fields("outage", transport=self.where, met_by=who, reason=reason),
        )

    def reached(self, key: Hashable) -> None:
        """The loop ``key`` has just had an answer from Redis (a refusal is one too)."""
        if self._since is None:  # the common case: one attribute test per round
            return
        self._failing.discard(key)
        if self._failing:
            return
        lasted = time.monotonic() - self._since
        logger.info(
            "Redis at %s is reachable again after %.1fs (%d failed attempt%s meanwhile)",
            self.where,
            lasted,
            self._failures,
            "" if self._failures == 1 else "s",
            extra=log_fields(
                "outage_over",
                transport=self.where,
                outage_s=round(lasted, 1),
                failed_attempts=self._failures,
            ),
        )
        self._since = self._reason = None
        self._refused = False
        self._tls.clear()

    def pool_blamed(self, exc: BaseException, pool_full: tuple[type[BaseException], ...]) -> bool:
        """True if ``exc`` is a full pool (one of ``pool_full``) and no outage is open.

        During an outage a full pool is the outage's doing (see :meth:`explain`): the
        loops report it as the outage, not as the pool's limit.
        """
        return isinstance(exc, pool_full) and not self.down

    def explain(
        self, exc: BaseException, pool_full: tuple[type[BaseException], ...], client: Redis
    ) -> str:
        """The text to log for a command of ``client`` that failed with ``exc``.

        A pool with no free connection is named with its limit and how to raise it,
        unless an outage is open: a silent Redis holds every command's connection until
        the socket timeout, so the outage fills the pool, and a larger pool would change
        nothing (operations audit, finding 2).
        """
        if not isinstance(exc, pool_full):
            return str(exc) or type(exc).__name__
        if self.down:
            return (
                f"no free connection: Redis at {self.where} is unreachable, and the "
                f"transport's connections wait for its answers until they time out"
            )
        return pool_exhausted(client)

    def forget(self, key: Hashable) -> None:
        """The loop ``key`` ended: the outage's end no longer waits for it."""
        self._failing.discard(key)
