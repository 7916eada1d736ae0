"""``bus tail``: the end of a broker outage whose warning the tail showed.

The command shows the library's WARNING and ERROR records (``_logs``); INFO records
only with ``-v``. A transport logs the start of an outage as a WARNING and its end as
an INFO, so during an incident the operator watching ``bus tail`` saw the broker go
away and never come back (operations audit, finding 15). While a tail runs, each
transport's recovery INFO is shown too, at the same verbosity, when a WARNING of that
transport's logger came before it (the outage's, already shown); every other INFO
record stays hidden without ``-v``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from . import _logs

__all__ = ["RECOVERIES", "recoveries_shown"]

#: each transport's logger, and the start of the message (the format string, unformatted)
#: of the INFO record it logs when an outage it warned about is over
RECOVERIES: dict[str, str] = {
    "pepperpy.event.transports.redis": "Redis at %s is reachable again",
    "pepperpy.event.transports.nats": "reconnected to NATS at %s",
    "pepperpy.event.transports.rabbitmq": "the connection to RabbitMQ at %s is back",
}


class _Recoveries(logging.Handler):
    """Passes a recovery INFO to the command's stderr handler once its logger warned."""

    def __init__(self, shown: logging.Handler) -> None:
        super().__init__(logging.INFO)
        self.shown = shown
        self.warned: set[str] = set()  # loggers whose WARNING came since their last recovery

    def emit(self, record: logging.LogRecord) -> None:
        if record.name not in RECOVERIES:
            return
        if record.levelno >= logging.WARNING:
            self.warned.add(record.name)
        elif (
            record.levelno == logging.INFO
            and record.name in self.warned
            and isinstance(record.msg, str)
            and record.msg.startswith(RECOVERIES[record.name])
        ):
            self.warned.discard(record.name)
            self.shown.handle(record)  # handle(): its filters, not its level


@contextmanager
def recoveries_shown() -> Iterator[None]:
    """While the block runs, show each transport's outage-over INFO after its WARNING.

    Nothing changes when the command already shows INFO records (``-v``), or has no
    stderr handler (a program calling ``main()`` without it). The ``pepperpy.event``
    logger is let through INFO records meanwhile (restored after).
    """
    shown = _logs._installed[-1] if _logs._installed else None  # the innermost main()'s
    if shown is None or shown.level <= logging.INFO:
        yield
        return
    logger = logging.getLogger(_logs.LOGGER)
    level = logger.level
    recoveries = _Recoveries(shown)
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    logger.addHandler(recoveries)
    try:
        yield
    finally:
        logger.removeHandler(recoveries)
        logger.setLevel(level)
