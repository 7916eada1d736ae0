"""``Transport.publish_many``'s default: a batch published concurrently, in key order.

Every shipped transport gets a batch's throughput from concurrent ``publish`` calls:
Redis coalesces them into pipelines, NATS JetStream and RabbitMQ await their acks and
publisher confirms together. What concurrent calls do *not* keep, on any broker, is
their order: Redis sends the first call at once and pipelines the others on another
connection (and pipelines in flight together use several connections, which Redis
interleaves), and every transport retries a failed attempt on its own, so a later event
can be stored before an earlier one is retried. So events with one key are published
one after the other, each once the previous one was stored, while different keys, and
events without a key, are published concurrently: at most ``window`` publishes are in
flight at once (a million events never make a million tasks).

Once a publish fails no other starts (the events not started are not stored); those in
flight finish, and :class:`~pepperpy.event.BatchPublishError` says what became of each.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from .._errors import BatchPublishError, ClosedError, TransportError
from .._event import Event

if TYPE_CHECKING:
    from .base import Transport

__all__ = ["PUBLISH_WINDOW", "batch_error", "publish_concurrently"]

#: how many publishes of one ``publish_many`` are in flight at once, at most
PUBLISH_WINDOW = 256


def chains(keys: Sequence[str | None]) -> list[list[int]]:
    """The batch's indexes, one list per key in batch order (each unkeyed event alone),
    the lists in the order of their first event."""
    found: list[list[int]] = []
    by_key: dict[str, list[int]] = {}
    for index, key in enumerate(keys):
        if key is None:
            found.append([index])
            continue
        chain = by_key.get(key)
        if chain is None:
            chain = by_key[key] = []
            found.append(chain)
        chain.append(index)
    return found


async def publish_concurrently(
    transport: Transport,
    events: Sequence[Event],
    keys: Sequence[str | None],
    *,
    window: int = PUBLISH_WINDOW,
) -> None:
    """Publish ``events[i]`` with ``keys[i]``: one key at a time in batch order, keys
    concurrently, at most ``window`` in flight; raise :class:`BatchPublishError` if any
    publish failed."""
    if len(events) != len(keys):
        raise ValueError(f"{len(events)} events but {len(keys)} keys: give one key per event")
    outcomes: list[bool | None] = [False] * len(events)
    errors: dict[int, BaseException] = {}
    found = chains(keys)
    pending: Iterator[list[int]] = iter(found)

    async def worker() -> None:
        for chain in pending:  # shared: each chain goes to the next free worker
            for index in chain:
                if errors:
                    return  # a publish failed: start no more (they stay not stored)
                try:
                    await transport.publish(events[index], key=keys[index])
                except Exception as exc:
                    errors[index] = exc
                    outcomes[index] = (
                        exc.stored if isinstance(exc, TransportError | ClosedError) else None
                    )
                    return
                outcomes[index] = True

    workers = min(window, len(found))  # one key: one worker, no idle tasks
    if workers == 1:
        await worker()
    elif workers:
        async with asyncio.TaskGroup() as group:
            for _ in range(workers):
                group.create_task(worker())
    if errors:
        error = batch_error(events, outcomes, errors)
        raise error from errors[min(errors)]


def batch_error(
    events: Sequence[Event], outcomes: Sequence[bool | None], errors: dict[int, BaseException]
) -> BatchPublishError:
    """The error of a batch some events of which failed, counting what became of each."""
    stored = sum(outcome is True for outcome in outcomes)
    unknown = sum(outcome is None for outcome in outcomes)
    first = min(errors)
    failed = errors[first]
    message = (
        f"publish_many: {len(events) - stored} of {len(events)} events not published "
        f"({stored} stored, {len(events) - stored - unknown} not stored, {unknown} unknown: "
        f"see .outcomes); the first failure, events[{first}] ({events[first].type}, "
        f"{events[first].id}): {type(failed).__name__}: {failed}"
    )
    return BatchPublishError(message, tuple(events), tuple(outcomes), dict(errors))
