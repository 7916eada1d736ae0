"""A handler registered by a handler of the event being emitted is not called by that
emit (it keeps the list it started with, as for ``off``), only by later ones; in the
one-handler path, the several-handler path, buffered or not, and on a pattern."""

from __future__ import annotations

import pytest

from pepperpy.event import Event, EventManager


@pytest.mark.parametrize("others", [0, 1])
@pytest.mark.parametrize("buffer_size", [None, 2])
@pytest.mark.parametrize("pattern", ["job.run", "job.*", "#"])
async def test_registered_mid_emit_runs_from_the_next_emit(
    others: int, buffer_size: int | None, pattern: str
) -> None:
    manager = EventManager(buffer_size=buffer_size)
    late: list[str] = []

    def newcomer(event: Event) -> None:
        late.append(event.id)

    @manager.on("job.run", priority=10)
    async def registers(event: Event) -> None:
        if not late and manager.handlers("job.run").count(newcomer) == 0:
            manager.on(pattern, newcomer, priority=20)  # would run first, if at all

    for _ in range(others):
        manager.on("job.run", lambda event: None)

    first = await manager.emit("job.run")
    second = await manager.emit("job.run")
    assert first.id not in late
    assert late == [second.id]
