"""A checkpoint past the newest event of the store it resumes on.

A consumer saves a position only once it has read the event there, so a checkpoint is
never past the store's head (the newest event written, deleted streams' included: the
head never moves back). One that is past it means the log lost events the consumer had
read (the store restored from an older backup, its file or database replaced) or the
checkpoint store belongs to another event store. Resuming after it would silently pass
over the events appended since at the positions up to the checkpoint's. So every
consumer that resumes from a checkpoint (:class:`~pepperpy.event.EventReplay`,
:class:`~pepperpy.event.Projection` and its table form, a checkpointed
``EventProcessor.attach``) compares it with the head first, and refuses with
:class:`~pepperpy.event.ReplayError` naming the checkpoint, its position, the head, and
how to go on.

The head is read *after* the checkpoint was loaded: any position saved before the load
was at or below the head when it was saved, and the head only grows, so an append (or a
save by another consumer) racing the check never makes a sound checkpoint look past it.
For a ``replay_stream`` checkpoint, which holds a stream position, the stream's head is
its last position ever written (a deleted incarnation's too). Reads that start past the
head without a checkpoint (``subscribe(head + 1)`` to follow new events) are not checked.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._errors import ClosedError, ReplayError

if TYPE_CHECKING:
    from .store import EventStore

__all__ = ["check_not_past_head"]


async def check_not_past_head(
    store: EventStore, what: str, position: int, recover: str, *, stream: str | None = None
) -> None:
    """Refuse ``what`` (``checkpoint 'daily'``), saved at ``position``, if that is past
    ``store``'s head (``stream``'s, for a stream position); ``recover`` says how to go on
    (what deletes or rebuilds it).

    The backend is asked, not :meth:`EventStore.head` (which needs ``read`` on every
    stream): the head is only compared with a position the caller could load. A store
    closed before or during the check is left to the caller's next read.
    """
    if store.closed:
        return  # the read that follows meets the closed store, as without a checkpoint
    try:
        if stream is None:
            head = await store.backend.head()
        else:
            state = await store.backend.stream_state(stream)
            head = None if state is None or state.next_position == 0 else state.next_position - 1
    except ClosedError:
        if store.closed:  # closed meanwhile (an attachment's store): as above
            return
        raise
    kind, log = (
        ("global position", "the store") if stream is None else ("position", f"stream {stream!r}")
    )
    if head is not None and position <= head:
        return
    newest = f"whose newest event is at {kind} {head}" if head is not None else "which is empty"
    raise ReplayError(
        f"{what} is at {kind} {position}, past the end of {log}, {newest}: positions are "
        "saved only for events that were read, so the log lost events (restored from an "
        "older backup?) or the checkpoint was saved against another event store; resuming "
        f"would silently pass over the events written up to {kind} {position}, so nothing "
        f"was read. {recover}"
    )
