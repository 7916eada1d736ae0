"""What the bus does with an event a handler failed on after every retry: keep it in
``bus.dead_letters``, log it (its traceback once per handler and error, then counted),
pass it to the ``on_error`` callbacks, each as the principal that registered it, and
republish it to ``deadletter.<topic>``.

A callback or the republish that fails, a ``CancelledError`` of its own included, is
logged and the rest still run (:mod:`._guarded`).
"""

from __future__ import annotations

import logging
from functools import partial
from typing import TYPE_CHECKING

from ._blame import blamed
from ._bus_logging import log_fields, logged_shorter
from ._bus_serve import where
from ._cancel import cancelling
from ._deadletter import dead_letter_event, partition_key, shortened_reason
from ._event import Event
from ._guarded import guarded
from ._oversize import OversizeError
from .security._principal import PRINCIPAL

if TYPE_CHECKING:
    from ._bus import EventBus
    from ._manager import DeadLetter

__all__ = ["dead_letter"]

logger = logging.getLogger("pepperpy.event.bus")


async def dead_letter(
    bus: EventBus, letter: DeadLetter, group: str | None, cut: str | None = None
) -> None:
    """Handle ``letter``, of a delivery to ``group`` (None: no group); ``cut`` says why
    its retries ended before ``max_attempts`` (the bus closed during a wait)."""
    letter, name = blamed(letter)  # an attached processor names its own handler
    bus.dead_letters.append(letter)
    bus._dead_letter_count += 1
    event = letter.event
    reason = shortened_reason(f"{type(letter.exception).__name__}: {letter.exception}")
    dead = dead_letter_event(
        event,
        reason=reason if cut is None else f"{reason} ({cut})",
        attempts=letter.attempts,
        group=group,
    )
    if dead is None:
        fate = "not dead-lettered again: it is a dead letter"
    else:
        fate = f"dead-lettering it to {dead.type} as {dead.id}"
        if group is not None:
            fate += f" (group {group})"
    if cut is not None:
        fate = f"{cut}; {fate}"
    error = letter.exception
    seen = bus._tracebacks.check(name, error)
    fields = log_fields(
        "dead_letter",
        event_id=event.id,
        event_type=event.type,
        handler=name,
        group=group,
        attempt=letter.attempts,
        error_type=type(error).__name__,
        dead_letter_id=None if dead is None else dead.id,
        dead_letter_topic=None if dead is None else dead.type,
        transport=where(bus.transport),
        traceback_logged=seen.full,
    )
    if seen.full:
        logger.error(
            "bus handler %s failed for %s (%s) after %d attempt(s); %s%s",
            name,
            event.type,
            event.id,
            letter.attempts,
            fate,
            logged_shorter(seen, "without a traceback"),
            exc_info=error,
            extra=fields,
        )
    else:  # its traceback is the one logged with the first like it
        logger.error(
            "bus handler %s failed for %s (%s) after %d attempt(s) (%s: %s); %s; "
            "traceback not repeated: %d such failure(s) of this handler since the "
            "one logged with it %.0f s ago",
            name,
            event.type,
            event.id,
            letter.attempts,
            type(error).__name__,
            error,
            fate,
            seen.repeats,
            seen.since,
            extra={**fields, "repeats": seen.repeats},
        )
    since = cancelling()  # only a cancellation after it is this task's own
    for callback, principal in list(bus._error_callbacks):
        acting = PRINCIPAL.set(principal)
        try:
            await guarded(
                partial(callback, letter),
                since,
                logger,
                "bus on_error callback %r failed",
                callback,
            )
        finally:
            PRINCIPAL.reset(acting)
    if dead is None:
        return
    await guarded(
        partial(_republish, bus, dead, event, group),
        since,
        logger,
        "could not publish dead letter %s for %s (%s) to %s",
        dead.id,
        event.type,
        event.id,
        dead.type,
        awaits=True,
    )


async def _republish(bus: EventBus, dead: Event, event: Event, group: str | None) -> None:
    """Publish ``dead``, the dead letter of ``event``. One over the broker's message size
    limit (its metadata made an event that fit too large) is dropped with an ERROR record
    of its own, kind ``dead_letter_dropped``: no broker of that limit could store it, and
    it stays only in ``bus.dead_letters``. Any other failure raises, for :func:`guarded`
    to log."""
    try:
        await bus.transport.publish(dead, key=partition_key(dead))
    except OversizeError as error:
        limit = "" if error.limit is None else f" of {error.limit:,} bytes"
        logger.error(
            "cannot publish dead letter %s for %s (%s) to %s: it is %s bytes, over the "
            "broker's message size limit%s (%s); the dead letter is dropped (it is kept "
            "only in bus.dead_letters)",
            dead.id,
            event.type,
            event.id,
            dead.type,
            f"{error.size:,}",
            limit,
            error.source,
            extra=log_fields(
                "dead_letter_dropped",
                event_id=event.id,
                event_type=event.type,
                group=group,
                dead_letter_id=dead.id,
                dead_letter_topic=dead.type,
                size=error.size,
                limit=error.limit,
                transport=where(bus.transport),
            ),
        )
