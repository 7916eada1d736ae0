"""EventManager's constructor settings, set again on the instance (they are documented
attributes). ``buffer_size`` was a plain attribute: set on an unbuffered manager it was
ignored by ``emit`` (the fast path decided at construction) while ``emit_nowait`` obeyed
it, and set to None on a buffered one the next emit failed with a bare AssertionError
from the slot bookkeeping. It is fixed at construction now, and says so. ``retry_policy``
and ``max_listeners`` may change, and a bad value is refused as the constructor refuses
it, instead of failing later deep inside an emit or a registration."""

from __future__ import annotations

import pytest

from pepperpy.event import ConfigurationError, Event, EventManager, RetryPolicy


@pytest.mark.parametrize("before, after", [(None, 1), (2, None), (2, 5)])
async def test_buffer_size_is_fixed_at_construction(before: int | None, after: int | None) -> None:
    manager = EventManager(buffer_size=before)
    with pytest.raises(AttributeError, match="buffer_size is fixed at construction"):
        manager.buffer_size = after
    assert manager.buffer_size == before
    seen: list[Event] = []
    manager.on("job.run", seen.append)
    await manager.emit("job.run")
    await manager.emit_nowait("job.run")
    assert len(seen) == 2


async def test_retry_policy_can_change_and_is_checked() -> None:
    manager = EventManager()
    tries: list[int] = []

    @manager.on("job.run")
    def fail(event: Event) -> None:
        tries.append(1)
        raise ValueError("boom")

    with pytest.raises(TypeError, match="retry_policy must be a RetryPolicy"):
        manager.retry_policy = 3  # type: ignore[assignment]
    manager.retry_policy = RetryPolicy.fixed(max_attempts=2, base_delay=0)
    await manager.emit("job.run")
    assert len(tries) == 2
    assert manager.dead_letters[-1].attempts == 2


def test_max_listeners_can_change_and_is_checked() -> None:
    manager = EventManager(max_listeners=1)
    with pytest.raises(ConfigurationError, match="max_listeners"):
        manager.max_listeners = 0
    with pytest.raises(TypeError, match="max_listeners"):
        manager.max_listeners = "3"  # type: ignore[assignment]
    assert manager.max_listeners == 1
    manager.max_listeners = 2
    manager.on("job.run", print)
    manager.on("job.run", print)
    assert len(manager.handlers("job.run")) == 2
