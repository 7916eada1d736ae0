"""Property: whatever the middleware stack, a failure is never lost.

Random stacks of the built-in middleware around handlers that fail a random number of
times: ``process`` either completes with every handler having succeeded once, or
raises, or (with a dead-letter middleware) records a dead letter per handler that still
failed - never nothing.
"""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from pepperpy.event import (
    DeadLetterMiddleware,
    DeduplicateMiddleware,
    Event,
    EventProcessor,
    LogMiddleware,
    MetricsCollector,
    RetryMiddleware,
    RetryPolicy,
    TimeoutMiddleware,
)

ATTEMPTS = 3
KINDS = ["retry", "timeout", "dedupe", "log", "measure", "sync"]


def build(kind: str) -> Any:
    if kind == "retry":
        return RetryMiddleware(RetryPolicy.fixed(max_attempts=ATTEMPTS, base_delay=0))
    if kind == "timeout":
        return TimeoutMiddleware(5.0)
    if kind == "dedupe":
        return DeduplicateMiddleware()
    if kind == "log":
        return LogMiddleware("tests.properties", error_level=10)
    if kind == "measure":
        return MetricsCollector().measure("p")

    def passthrough(event: Event, next_handler: Any) -> Any:
        return next_handler(event)

    return passthrough


@settings(max_examples=150, deadline=None)
@given(
    stack=st.lists(st.sampled_from(KINDS), max_size=5),
    failures=st.lists(st.integers(0, 4), min_size=1, max_size=3),
    dead_letter_outside=st.booleans(),
)
def test_failures_are_never_lost(
    stack: list[str], failures: list[int], dead_letter_outside: bool
) -> None:
    processor = EventProcessor()
    dead = DeadLetterMiddleware()
    if dead_letter_outside:
        processor.middleware(dead)
    processor.use(*(build(kind) for kind in stack))
    calls = [0] * len(failures)
    succeeded = [0] * len(failures)

    def handler(index: int) -> Any:
        async def handle(event: Event) -> None:
            calls[index] += 1
            await asyncio.sleep(0)
            if calls[index] <= failures[index]:
                raise ConnectionError(f"handler {index} failure {calls[index]}")
            succeeded[index] += 1

        return handle

    for index in range(len(failures)):
        processor.handle("job", handler(index))

    raised: BaseException | None = None
    try:
        asyncio.run(processor.process(Event("job")))
    except (ConnectionError, ExceptionGroup) as exc:
        raised = exc
    retries = stack.count("retry")
    tries = ATTEMPTS**retries  # nested retries multiply the attempts
    should_fail = any(f >= tries for f in failures)
    if should_fail:
        failed = {processor.handlers("job")[i] for i, f in enumerate(failures) if f >= tries}
        if raised is None:  # one dead letter per handler that retries could not fix
            assert {letter.handler for letter in dead.dead_letters} == failed
            assert len(dead.dead_letters) == len(failed)
        assert not (raised is not None and dead_letter_outside)
    else:
        assert raised is None and not dead.dead_letters
        assert succeeded == [1] * len(failures)  # each handler succeeded exactly once
    assert all(s <= 1 for s in succeeded)
