"""``off_all`` and ``patterns``: pyee's ``remove_all_listeners`` and ``event_names``."""

from __future__ import annotations

import pytest

from pepperpy.event import Event, EventManager, PatternError


def handler(event: Event) -> None:
    pass


def other(event: Event) -> None:
    pass


async def test_patterns_lists_each_registered_pattern_once_in_order() -> None:
    manager = EventManager()
    assert manager.patterns() == []
    manager.on("user.*", handler)
    manager.on("order.placed", handler)
    manager.on("user.*", other)
    assert manager.patterns() == ["user.*", "order.placed"]
    await manager.off("user.*", handler)  # user.*'s first registration in place is later
    assert manager.patterns() == ["order.placed", "user.*"]
    await manager.off("user.*", other)
    assert manager.patterns() == ["order.placed"]


async def test_off_all_under_a_pattern() -> None:
    manager = EventManager()
    seen: list[str] = []
    manager.on("user.*", handler)
    manager.on("user.*", other)
    manager.on("user.created", lambda event: seen.append(event.type))
    assert manager.off_all("user.*") == 2
    assert manager.off_all("user.*") == 0
    await manager.emit("user.created")
    assert seen == ["user.created"]  # registered under another pattern: kept
    assert manager.patterns() == ["user.created"]


async def test_off_all_everything() -> None:
    manager = EventManager()
    manager.on("a", handler)
    manager.once("b.#", other)
    manager.on("c.*", handler)
    assert manager.off_all() == 3
    assert manager.patterns() == []
    assert manager.handlers("c.d") == []
    manager.on("a", handler)  # the manager is still usable
    assert manager.handlers("a") == [handler]


async def test_off_all_from_inside_a_handler() -> None:
    manager = EventManager()
    seen: list[str] = []

    def first(event: Event) -> None:
        seen.append("first")
        manager.off_all()

    def second(event: Event) -> None:
        seen.append("second")

    manager.on("a", first, priority=1)
    manager.on("a", second)
    await manager.emit("a")  # the running emit keeps its list
    await manager.emit("a")
    assert seen == ["first", "second"]


def test_off_all_refuses_bad_patterns() -> None:
    manager = EventManager()
    with pytest.raises(TypeError, match="off_all"):
        manager.off_all(handler)  # type: ignore[arg-type]
    with pytest.raises(PatternError):
        manager.off_all("a..b")
