"""A dead letter's exception chains every try's failure, the last first (its
``__context__``), in every path, so the logged traceback shows each try in order. The
one-handler path chained each retry to the *first* try (the exception being handled
around the retries), so the middle tries were missing; with several handlers, the
retries ran in Tasks of their own and nothing was chained. A context of the handler's
own is kept (before the previous try), and a handler re-raising one exception object
makes no loop."""

from __future__ import annotations

import logging

import pytest

from pepperpy.event import Event, EventManager, RetryPolicy

THREE = RetryPolicy.fixed(max_attempts=3, base_delay=0)


def chain(error: BaseException | None) -> list[object]:
    found: list[object] = []
    while error is not None and len(found) < 20:
        found.append(error.args[0] if error.args else None)
        error = error.__context__
    return found


@pytest.fixture(autouse=True)
def _quiet(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.CRITICAL, logger="pepperpy.event")


@pytest.mark.parametrize("is_async", [False, True])
@pytest.mark.parametrize("others", [0, 1])
@pytest.mark.parametrize("buffer_size", [None, 3])
async def test_every_try_is_chained_in_order(
    is_async: bool, others: int, buffer_size: int | None
) -> None:
    manager = EventManager(retry_policy=THREE, buffer_size=buffer_size)
    tries: list[int] = []

    def fail_sync(event: Event) -> None:
        tries.append(len(tries) + 1)
        raise ValueError(f"try {len(tries)}")

    async def fail_async(event: Event) -> None:
        fail_sync(event)

    manager.on("job.run", fail_async if is_async else fail_sync)
    for _ in range(others):
        manager.on("job.run", lambda event: None)
    await manager.emit("job.run")
    [letter] = manager.dead_letters
    assert letter.attempts == 3
    assert chain(letter.exception) == ["try 3", "try 2", "try 1"]


async def test_a_context_of_the_handlers_own_is_kept() -> None:
    manager = EventManager(retry_policy=THREE)

    @manager.on("job.run")
    def fail(event: Event) -> None:
        try:
            raise KeyError("inner")
        except KeyError:
            raise ValueError("outer") from None

    await manager.emit("job.run")
    [letter] = manager.dead_letters
    assert chain(letter.exception) == ["outer", "inner"] * 3


async def test_the_same_exception_raised_again_makes_no_loop() -> None:
    manager = EventManager(retry_policy=THREE)
    same = ValueError("same")

    @manager.on("job.run")
    def fail(event: Event) -> None:
        raise same

    @manager.on("job.run")
    def other(event: Event) -> None:
        pass

    await manager.emit("job.run")
    [letter] = manager.dead_letters
    assert letter.exception is same
    assert chain(same) == ["same"]
