"""The ack waits of a group's JetStream consumers, which its members share.

A group's durable consumers (see ``_consumer``) are made by its first member, and each
later member asks for them again with its own ``ack_wait`` (``lane_ack_wait`` on the key
lanes). JetStream can change a durable consumer's ``ack_wait``, so the member that joins
last sets the group's wait: the group's waits are those of the member that created or
updated the consumers last, as for the stream's settings of the program that made it.
Changing them is not silent: the member logs one WARNING naming the old and new waits.
The members already running learn them (``Consumer._tell_members``, and on reconnecting
from the consumers' info), so that they report their slow handlers in progress at a third
of the group's wait, not of their own.
A consumer JetStream will not take the whole configuration of again (one recreated from
a resume point after the server lost it, whose deliver policy cannot change) gets only
its ``ack_wait`` changed; if the server refuses that too, the member does not join and
raises :class:`ConfigurationError` naming both waits.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from ..._errors import ConfigurationError

if TYPE_CHECKING:
    from nats.js import JetStreamContext

__all__ = [
    "consumer_settings",
    "report_changed_pending",
    "report_changed_waits",
    "same_wait",
    "take_wait",
]

logger = logging.getLogger("pepperpy.event.transports.nats")


class _Lane(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def ack_wait(self) -> float: ...


def same_wait(first: float | None, second: float) -> bool:
    """Whether two waits in seconds are one to JetStream, which keeps nanoseconds."""
    return first is not None and round(first * 1e9) == round(second * 1e9)


async def consumer_settings(
    js: JetStreamContext, stream: str, name: str
) -> tuple[float | None, int | None]:
    """The ``ack_wait`` and ``max_ack_pending`` of consumer ``name`` on ``stream``; both
    None if there is none yet."""
    from nats.js.errors import NotFoundError

    try:
        info = await js.consumer_info(stream, name)
    except NotFoundError:
        return None, None
    wait, pending = info.config.ack_wait, info.config.max_ack_pending
    return (
        float(wait) if wait is not None else None,
        int(pending) if pending is not None else None,
    )


def report_changed_pending(group: str | None, stream: str, before: int, now: int) -> None:
    """Log that a member changed the group's ``max_ack_pending`` (its unkeyed events in
    flight at once, all members together) from what another member had set."""
    logger.warning(
        "group %r on stream %r: its JetStream consumer let %d unkeyed events be in flight "
        "at once (set by another member, or an earlier version of this program); this "
        "member's max_ack_pending=%d now applies to the whole group, all members "
        "together: give every member of a group the same max_ack_pending",
        group,
        stream,
        before,
        now,
    )


async def take_wait(
    js: JetStreamContext, stream: str, lane: _Lane, option: str, config: Any, group: str | None
) -> None:
    """Give the existing consumer of ``lane``, whose configuration is ``config``, the
    lane's ``ack_wait`` and nothing else (see the module's docstring); ``option``: the
    transport option that sets it (``ack_wait`` or ``lane_ack_wait``)."""
    from nats.js.errors import BadRequestError, ServerError

    before = config.ack_wait
    config.ack_wait = lane.ack_wait
    try:
        await js.add_consumer(stream, config)
    except (BadRequestError, ServerError) as exc:
        raise ConfigurationError(
            f"JetStream consumer {lane.name!r} of group {group!r} on stream {stream!r} waits "
            f"{before:g}s ({option}) and the server refused to change it to this member's "
            f"{lane.ack_wait:g}s ({exc}); give every member of the group the same {option}"
        ) from exc


def report_changed_waits(
    group: str | None, stream: str, changed: Sequence[tuple[str, float, float]]
) -> None:
    """Log, once for a subscription, that it changed the waits of its group's consumers
    from what another member had set: ``changed`` holds, for each consumer changed, the
    option that sets its wait, its wait before and its wait now."""
    if not changed:
        return
    before: dict[str, set[float]] = {}
    after: dict[str, float] = {}
    for option, old, new in changed:
        before.setdefault(option, set()).add(old)
        after[option] = new
    was = ", ".join(
        f"{option} {' or '.join(f'{wait:g}s' for wait in sorted(waits))}"
        for option, waits in before.items()
    )
    now = ", ".join(f"{option} {wait:g}s" for option, wait in after.items())
    logger.warning(
        "group %r on stream %r: its JetStream consumers had %s (set by another member, or "
        "an earlier version of this program); this member's %s now apply to the whole "
        "group, and the members running now report their slow handlers at a third of "
        "them: give every member of a group the same ack_wait and lane_ack_wait, as the "
        "member that joins last sets them",
        group,
        stream,
        was,
        now,
    )
