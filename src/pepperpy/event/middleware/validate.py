"""Validation as middleware: only events that match their schema reach the handlers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._event import Event
from .._processor import NextHandler
from .._shredded import shredded_read

if TYPE_CHECKING:
    from ..validation import EventValidator

__all__ = ["ValidateMiddleware"]


class ValidateMiddleware:
    """Validate ``event.data`` against the schema registered for ``event.type``.

    Handlers receive the event with validated data (defaults filled in, datetimes
    parsed) and, when upcasters are registered, upgraded to the latest version; id and
    timestamp are kept, and metadata is shared: what a handler writes in
    ``event.metadata`` is seen by the middleware further out. Invalid data raises
    :class:`~pepperpy.event.ValidationError` outwards (a dead-letter middleware further
    out records it). Types without a schema follow the validator's ``unknown_types``.
    An event of a shredded stream read from an encrypted store (data None,
    ``metadata["pepperpyshredded"]`` True, read from a stream) has no data left to
    validate: it is passed on as it is. Any other event is validated, marker or not;
    appending or publishing an event carrying the marker is refused (the key is
    reserved), unless it is such a shredded event.
    """

    def __init__(self, validator: EventValidator) -> None:
        if isinstance(validator, type):
            # the class has a validate function too: taken, every event then failed
            # with "validate() missing 1 required positional argument: 'data'"
            raise TypeError(
                f"validator must be an EventValidator instance, not the class "
                f"{validator.__qualname__}: pass one with its schemas registered"
            )
        if not callable(getattr(validator, "validate", None)):
            raise TypeError(f"validator must be an EventValidator, got {validator!r}")
        self.validator = validator

    async def __call__(self, event: Event, next_handler: NextHandler) -> None:
        if shredded_read(event):
            # read from an encrypted store after its stream was shredded: there is no
            # data left to validate, and refusing it would stop every consumer of the
            # log at it; handlers get it as the store gives it (data None, marked)
            await next_handler(event)
            return
        checked = await self.validator.validate(event.type, event.data, version=event.version)
        upgraded = event.replace(data=checked.data, version=checked.version)
        if event.stream is not None:  # keep where a stored event came from
            assert event.position is not None and event.global_position is not None
            recorded_at = event.recorded_at or event.timestamp
            upgraded = upgraded._with_position(
                event.stream, event.position, event.global_position, recorded_at
            )
        # one event, one metadata: what the handlers write there (the one mutable part)
        # reaches the middleware further out, a LogMiddleware's fields() say; replace()
        # and _with_position() give the upgraded event a copy, so it is shared last
        upgraded._metadata = event.metadata
        await next_handler(upgraded)
