"""``manager.off`` removes at the call: awaiting it only reads the result.

pyee and blinker remove synchronously, so ``manager.off(...)`` without ``await`` is an easy
slip; it used to leave the handler registered behind a never-awaited coroutine.
"""

from __future__ import annotations

import warnings

from pepperpy.event import Event, EventManager


async def test_off_without_await_removes_the_handler() -> None:
    manager = EventManager()
    seen: list[str] = []

    def handler(event: Event) -> None:
        seen.append(event.type)

    manager.on("a.b", handler)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "coroutine ... was never awaited" either
        result = manager.off("a.b", handler)
        await manager.emit("a.b")
    assert seen == []
    assert bool(result) is True
    assert await result is True  # awaiting later reads the same answer
    assert await manager.off("a.b", handler) is False
    assert not manager.off("a.b", handler)


async def test_awaited_off_reports_what_was_removed() -> None:
    manager = EventManager()

    async def handler(event: Event) -> None:
        return None

    manager.on("a.*", handler)
    manager.once("a.*", handler)
    assert await manager.off("a.*", handler) is True  # both registrations
    assert manager.handlers("a.x") == []
    assert repr(manager.off("a.*", handler)) == "<Removed False>"


async def test_off_from_inside_a_handler_takes_effect_for_the_next_emit() -> None:
    manager = EventManager()
    calls: list[str] = []

    def other(event: Event) -> None:
        calls.append("other")

    def remover(event: Event) -> None:
        calls.append("remover")
        manager.off("x", other)  # no await: the removal is done here

    manager.on("x", remover, priority=1)
    manager.on("x", other)
    await manager.emit("x")  # the running emit keeps its list
    await manager.emit("x")
    assert calls == ["remover", "other", "remover"]
