"""``stop()`` of a store attachment (and of ``run_in_background``) while a
``RetryMiddleware`` waits between two tries of a failing event (or a
``RateLimitMiddleware`` for a token).

A graceful stop lets the event in hand finish, and that included the whole retry
schedule: with five tries ten seconds apart, ``stop()`` (a deployment's shutdown) took
forty seconds, past most orchestrators' grace period. The wait is now cut short: the
event ends unfinished, neither retried further nor dead-lettered, and the checkpoint
stays before it, so the next attachment processes it again.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

from pepperpy.event import (
    DeadLetterMiddleware,
    Event,
    EventProcessor,
    EventStore,
    RateLimitMiddleware,
    RetryMiddleware,
    RetryPolicy,
)
from tests.processing.retry_waits import PAUSE, failing_processor, gated_processor

_WAIT = 60.0


async def test_stop_does_not_wait_out_a_retry_and_resumes_the_event(tmp_path: Path) -> None:
    failing = {1}
    tried: list[int] = []
    first_try = asyncio.Event()
    processor, letters = failing_processor(tried, first_try, failing)
    async with EventStore(f"sqlite:///{tmp_path / 'events.db'}") as store:
        await store.append("order.1", [Event("order.placed", {"n": n}) for n in range(3)])
        attachment = processor.attach(store, checkpoint="charges")
        await asyncio.wait_for(first_try.wait(), _WAIT)

        await asyncio.wait_for(attachment.stop(), _WAIT)  # waited the hour out before

        assert tried == [0, 1]
        assert attachment.checkpoint_position == 0  # before the unfinished event
        assert list(letters.dead_letters) == []  # not a failure: stopped
        failing.clear()  # the gateway is back
        again = processor.attach(store, checkpoint="charges")
        while again.processed < 2:  # noqa: ASYNC110 - polling the counter is the test
            await asyncio.sleep(0.01)
        await again.stop()
        assert tried == [0, 1, 1, 2]
        assert again.checkpoint_position == 2


async def test_a_stop_during_the_try_skips_the_wait_that_would_follow() -> None:
    gate = asyncio.Event()
    started = asyncio.Event()
    tried: list[int] = []
    processor = gated_processor(tried, started, gate)

    async with EventStore() as store:
        await store.append("order.1", Event("order.placed", {"n": 0}))
        attachment = processor.attach(store)
        await asyncio.wait_for(started.wait(), _WAIT)
        stopping = asyncio.ensure_future(attachment.stop())
        await asyncio.sleep(0)  # stop() has begun: the try in hand still finishes
        assert not stopping.done()
        gate.set()
        await asyncio.wait_for(stopping, _WAIT)
        assert tried == [0]  # finished its try, and no other came
        assert attachment.last_global_position is None  # the event was not finished


async def test_run_in_background_stops_during_a_retry_wait() -> None:
    tried: list[int] = []
    first_try = asyncio.Event()
    processor, _ = failing_processor(tried, first_try, {0})

    async def events() -> AsyncIterator[Event]:
        yield Event("order.placed", {"n": 0})
        await asyncio.Event().wait()  # then nothing more, for ever

    attachment = processor.run_in_background(events())
    await asyncio.wait_for(first_try.wait(), _WAIT)
    await asyncio.wait_for(attachment.stop(), _WAIT)
    assert tried == [0]


async def test_a_handlers_own_retry_in_another_task_is_not_cut_short() -> None:
    """A processor a handler runs in a task of its own inherits the attachment's
    context: its retries are its own business, and the graceful stop waits for the
    handler, as it waits for any handler in hand."""
    inner_tries: list[int] = []
    first = asyncio.Event()
    inner = EventProcessor().use(RetryMiddleware(RetryPolicy.fixed(max_attempts=3, base_delay=0.2)))

    @inner.handle("audit.*")
    def audit(event: Event) -> None:
        inner_tries.append(1)
        first.set()
        if len(inner_tries) < 3:
            raise ConnectionError("audit log busy")

    outer = EventProcessor()

    @outer.handle("order.*")
    async def place(event: Event) -> None:
        await asyncio.ensure_future(inner.process(Event("audit.written", {})))

    async with EventStore() as store:
        await store.append("order.1", Event("order.placed", {"n": 0}))
        attachment = outer.attach(store)
        await asyncio.wait_for(first.wait(), _WAIT)
        await asyncio.wait_for(attachment.stop(), _WAIT)  # during the inner retry's wait
        assert inner_tries == [1, 1, 1]
        assert attachment.last_global_position == 0  # the event was finished


async def test_stop_does_not_wait_for_a_rate_limit_token() -> None:
    """The same for a ``RateLimitMiddleware``'s wait: at one event a minute, stop()
    waited up to a minute for the token of an event not yet begun."""
    seen: list[int] = []
    processor = EventProcessor().use(RateLimitMiddleware(1 / PAUSE))
    processor.handle("order.*", lambda event: seen.append(event.data["n"]))
    async with EventStore() as store:
        await store.append("order.1", [Event("order.placed", {"n": n}) for n in range(3)])
        attachment = processor.attach(store)
        while not seen:  # noqa: ASYNC110 - the first event takes the one token there is
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)  # the second now waits for its token
        await asyncio.wait_for(attachment.stop(), _WAIT)
        assert seen == [0]
        assert attachment.last_global_position == 0


async def test_closing_the_store_during_a_retry_wait_ends_the_attachment_quietly(
    tmp_path: Path,
) -> None:
    """Closing the store ends its attachments quietly, but one waiting to retry went on
    retrying the event after the close, and then failed (logged at ERROR, raised from
    ``wait()``) or, with a ``DeadLetterMiddleware``, dead-lettered it and saved its
    checkpoint past it: an event that would have succeeded on the next run was given up
    on the way out. The wait is now cut short when the store closes."""
    url = f"sqlite:///{tmp_path / 'events.db'}"
    failing = {1}
    tried: list[int] = []
    first_try = asyncio.Event()
    processor, letters = failing_processor(tried, first_try, failing)
    store = EventStore(url)
    await store.append("order.1", [Event("order.placed", {"n": n}) for n in range(3)])
    attachment = processor.attach(store, checkpoint="charges")
    await asyncio.wait_for(first_try.wait(), _WAIT)

    await store.close()
    await asyncio.wait_for(attachment.wait(), _WAIT)  # ends without an error

    assert tried == [0, 1]
    assert list(letters.dead_letters) == []
    assert attachment.checkpoint_position == 0
    failing.clear()
    async with EventStore(url) as reopened:
        again = processor.attach(reopened, checkpoint="charges")
        while again.processed < 2:  # noqa: ASYNC110 - polling the counter is the test
            await asyncio.sleep(0.01)
        await again.stop()
    assert tried == [0, 1, 1, 2]


async def test_an_event_cut_off_by_the_store_closing_is_not_counted_done(
    tmp_path: Path,
) -> None:
    """A handler writing to the store as the store closes fails with ``ClosedError``; a
    ``DeadLetterMiddleware`` records it and the event counted as done: the checkpoint
    moved past it, and the event was never processed again (its effect lost at every
    shutdown that closed the store first). It now stays before it, as after a crash."""
    url = f"sqlite:///{tmp_path / 'events.db'}"
    gate = asyncio.Event()
    arrived = asyncio.Event()
    effects: list[int] = []
    letters = DeadLetterMiddleware()
    processor = EventProcessor().use(letters)

    @processor.handle("order.*")
    async def project(event: Event) -> None:
        if event.data["n"] == 1 and not gate.is_set():
            arrived.set()
            await gate.wait()  # the store closes meanwhile
        await current["store"].append("totals.1", Event("total.updated", {"n": event.data["n"]}))
        effects.append(event.data["n"])

    current: dict[str, EventStore] = {"store": EventStore(url)}
    store = current["store"]
    await store.append("order.1", [Event("order.placed", {"n": n}) for n in range(3)])
    attachment = processor.attach(store, "order.*", checkpoint="totals")
    await asyncio.wait_for(arrived.wait(), _WAIT)
    await store.close()
    gate.set()
    await asyncio.wait_for(attachment.wait(), _WAIT)
    assert effects == [0]
    assert len(letters.dead_letters) == 1  # the ClosedError, recorded
    assert attachment.checkpoint_position == 0  # not past the event cut off

    async with EventStore(url) as reopened:
        current["store"] = reopened
        again = processor.attach(reopened, "order.*", checkpoint="totals")
        while len(effects) < 3:  # noqa: ASYNC110 - polling the list is the test
            await asyncio.sleep(0.01)
        await again.stop()
    assert effects == [0, 1, 2]


async def test_without_a_checkpoint_the_last_position_stays_before_a_cut_off_event() -> None:
    """The same without ``checkpoint=``: ``last_global_position`` (where to resume from)
    moved past the event the close cut off."""
    gate = asyncio.Event()
    arrived = asyncio.Event()
    letters = DeadLetterMiddleware()
    processor = EventProcessor().use(letters)
    store = EventStore()

    @processor.handle("order.*")
    async def project(event: Event) -> None:
        if event.data["n"] == 1:
            arrived.set()
            await gate.wait()
        await store.append("totals.1", Event("total.updated", {"n": event.data["n"]}))

    await store.append("order.1", [Event("order.placed", {"n": n}) for n in range(3)])
    attachment = processor.attach(store, "order.*")
    await asyncio.wait_for(arrived.wait(), _WAIT)
    await store.close()
    gate.set()
    await asyncio.wait_for(attachment.wait(), _WAIT)
    assert len(letters.dead_letters) == 1
    assert attachment.last_global_position == 0
