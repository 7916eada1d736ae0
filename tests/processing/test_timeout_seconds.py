"""``TimeoutMiddleware.seconds`` set after the middleware was made.

The middleware serves every deadline of one event loop with one watchdog timer, and
relied on deadlines expiring in arrival order, true only while they all have the same
length. ``seconds`` was a plain attribute: lowered while an event ran under the old,
longer limit, the next events' deadlines queued behind that one's and were not enforced
until it expired (an event 2 s long under a 0.1 s limit finished without a timeout),
and a bad value (a string, a negative number) failed every later event deep inside.
The setter now checks the value as the constructor does, and new events get the new
limit while the running ones keep theirs.
"""

from __future__ import annotations

import asyncio

import pytest

from pepperpy.event import Event, EventProcessor, TimeoutMiddleware


async def test_a_lowered_limit_applies_to_the_next_event_at_once() -> None:
    timeout = TimeoutMiddleware(5)
    processor = EventProcessor().use(timeout)
    release = asyncio.Event()

    @processor.handle("job.run")
    async def work(event: Event) -> None:
        if event.data == "long":
            await release.wait()
        else:
            await asyncio.sleep(1.5)

    long_one = asyncio.create_task(processor.process(Event("job.run", "long")))
    await asyncio.sleep(0.01)  # it runs under the 5 s limit
    timeout.seconds = 0.05
    loop = asyncio.get_running_loop()
    began = loop.time()
    with pytest.raises(TimeoutError, match=r"took longer than 0\.05s"):
        await processor.process(Event("job.run", "short"))
    assert loop.time() - began < 1.0
    assert not long_one.done()  # the one already running keeps its own limit
    release.set()
    await long_one


async def test_a_raised_limit_leaves_running_events_their_own() -> None:
    timeout = TimeoutMiddleware(0.05)
    processor = EventProcessor().use(timeout)

    @processor.handle("job.run")
    async def work(event: Event) -> None:
        await asyncio.sleep(event.data)

    first = asyncio.create_task(processor.process(Event("job.run", 1.5)))
    await asyncio.sleep(0.01)
    timeout.seconds = 5
    await processor.process(Event("job.run", 0.1))  # within the new limit
    with pytest.raises(TimeoutError, match=r"took longer than 0\.05s"):
        await first


@pytest.mark.parametrize(
    "value, error",
    [("1", TypeError), (True, TypeError), (0, ValueError), (-1, ValueError)],
)
def test_a_bad_value_is_refused_when_set(value: object, error: type[Exception]) -> None:
    timeout = TimeoutMiddleware(1)
    with pytest.raises(error, match="seconds must be a finite number of seconds > 0"):
        timeout.seconds = value  # type: ignore[assignment]
    assert timeout.seconds == 1.0
