"""``EventManager.on(..., weak=True)``: blinker's weak receivers, opt-in.

A weak registration does not keep its handler (or a bound method's object) alive; once
collected, the handler is not called nor listed, and its registration goes. The default
stays strong.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import weakref
from typing import Any

import pytest

from pepperpy.event import Event, EventManager


class Receiver:
    def __init__(self, seen: list[str], name: str = "r") -> None:
        self.seen = seen
        self.name = name

    def handle(self, event: Event) -> None:
        self.seen.append(f"{self.name}:{event.type}")

    async def handle_async(self, event: Event) -> None:
        self.seen.append(f"{self.name}:{event.type}")


async def test_a_collected_object_stops_being_called_and_listed() -> None:
    manager = EventManager()
    seen: list[str] = []
    receiver = Receiver(seen)
    manager.on("a.b", receiver.handle, weak=True)
    await manager.emit("a.b")
    assert seen == ["r:a.b"]
    assert manager.handlers("a.b") == [receiver.handle]
    alive = weakref.ref(receiver)
    del receiver
    gc.collect()
    assert alive() is None  # the registration did not keep it
    await manager.emit("a.b")
    assert seen == ["r:a.b"]
    assert manager.handlers("a.b") == []
    assert manager.patterns() == []
    assert len(manager._index) == 0  # the registration itself is gone


async def test_weak_plain_function_and_async_method() -> None:
    manager = EventManager()
    seen: list[str] = []

    def function(event: Event) -> None:
        seen.append("f")

    receiver = Receiver(seen)
    manager.on("a.b", function, weak=True)
    manager.on("a.b", receiver.handle_async, weak=True)
    await manager.emit("a.b")
    assert sorted(seen) == ["f", "r:a.b"]
    del function, receiver
    gc.collect()
    seen.clear()
    await manager.emit("a.b")  # several dead ones, one of them async: no error
    assert seen == []
    assert manager.handlers("a.b") == []
    assert list(manager.dead_letters) == []


async def test_strong_default_keeps_the_object() -> None:
    manager = EventManager()
    seen: list[str] = []
    receiver = Receiver(seen)
    manager.on("a.b", receiver.handle)
    alive = weakref.ref(receiver)
    del receiver
    gc.collect()
    assert alive() is not None
    await manager.emit("a.b")
    assert seen == ["r:a.b"]


async def test_once_and_weak() -> None:
    manager = EventManager()
    seen: list[str] = []
    kept = Receiver(seen, "kept")
    manager.once("a.b", kept.handle, weak=True)
    dropped = Receiver(seen, "dropped")
    manager.once("a.b", dropped.handle, weak=True)
    alive = weakref.ref(dropped)
    del dropped
    gc.collect()
    assert alive() is None
    await manager.emit("a.b")
    await manager.emit("a.b")
    assert seen == ["kept:a.b"]
    assert manager.handlers("a.b") == []


async def test_priority_order_is_kept() -> None:
    manager = EventManager()
    seen: list[str] = []
    low, high, gone = Receiver(seen, "low"), Receiver(seen, "high"), Receiver(seen, "gone")
    manager.on("a.b", low.handle, weak=True, priority=-1)
    manager.on("a.b", gone.handle, weak=True, priority=5)
    manager.on("a.b", high.handle, weak=True, priority=10)

    def middle(event: Event) -> None:
        seen.append("middle")

    manager.on("a.b", middle)
    del gone
    gc.collect()
    await manager.emit("a.b")
    assert seen == ["high:a.b", "middle", "low:a.b"]
    assert manager.handlers("a.b") == [high.handle, middle, low.handle]


async def test_collected_during_an_emit() -> None:
    manager = EventManager()
    seen: list[str] = []
    holder: dict[str, Receiver] = {"victim": Receiver(seen, "victim")}

    def killer(event: Event) -> None:
        seen.append("killer")
        holder.clear()  # the victim's last reference
        gc.collect()

    manager.on("a.b", killer, priority=1)
    manager.on("a.b", holder["victim"].handle, weak=True)
    await manager.emit("a.b")  # the victim was in this emit's list, then died
    assert seen == ["killer"]
    assert list(manager.dead_letters) == []
    assert manager.handlers("a.b") == [killer]
    await manager.emit("a.b")
    assert seen == ["killer", "killer"]


async def test_off_and_listening_with_weak() -> None:
    manager = EventManager()
    seen: list[str] = []
    receiver = Receiver(seen)
    manager.on("a.b", receiver.handle, weak=True)
    assert await manager.off("a.b", receiver.handle)  # a bound method taken again matches
    with manager.listening("a.b", receiver.handle, weak=True):
        await manager.emit("a.b")
    await manager.emit("a.b")
    assert seen == ["r:a.b"]
    assert manager.patterns() == []


async def test_dead_weak_registrations_do_not_count_against_max_listeners() -> None:
    manager = EventManager(max_listeners=1)
    first = Receiver([])
    manager.on("a.b", first.handle, weak=True)
    del first
    gc.collect()
    second = Receiver([])
    manager.on("a.b", second.handle, weak=True)  # no ListenerLimitError
    assert manager.handlers("a.b") == [second.handle]


async def test_a_dead_letter_keeps_the_object_only_while_kept() -> None:
    manager = EventManager()

    class Failing:
        def handle(self, event: Event) -> None:
            raise ValueError("boom")

    failing = Failing()
    manager.on("a.b", failing.handle, weak=True)
    await manager.emit("a.b")
    assert len(manager.dead_letters) == 1
    alive = weakref.ref(failing)
    del failing
    gc.collect()
    assert alive() is not None  # the letter names its handler
    manager.dead_letters.clear()
    gc.collect()
    assert alive() is None
    assert manager.handlers("a.b") == []


def test_what_cannot_be_weakly_referenced_is_refused() -> None:
    manager = EventManager()
    seen: list[Any] = []
    with pytest.raises(TypeError, match=r"weak=True: .*builtin's bound method"):
        manager.on("a.b", seen.append, weak=True)

    class Slotted:
        __slots__ = ()

        def __call__(self, event: Event) -> None:
            pass

    with pytest.raises(TypeError, match=r"weak=True: .*cannot be weakly referenced"):
        manager.on("a.b", Slotted(), weak=True)
    with pytest.raises(TypeError, match="weak must be a bool"):
        manager.on("a.b", print, weak=1)  # type: ignore[arg-type]
    assert manager.patterns() == []


async def test_gc_from_another_thread_while_emitting() -> None:
    manager = EventManager()
    seen: list[str] = []
    stop = threading.Event()

    def collect() -> None:
        while not stop.is_set():
            gc.collect()

    collector = threading.Thread(target=collect)
    collector.start()
    try:
        kept = Receiver(seen, "kept")
        manager.on("a.b", kept.handle, weak=True)
        for round_ in range(200):
            receivers = [Receiver(seen, f"t{round_}") for _ in range(3)]
            for receiver in receivers:
                manager.on("a.b", receiver.handle, weak=True)
                manager.on("a.#", receiver.handle_async, weak=True)
            await manager.emit("a.b")
            del receivers, receiver
            await manager.emit("a.b")
            await asyncio.sleep(0)
    finally:
        stop.set()
        collector.join()
    gc.collect()
    assert manager.handlers("a.b") == [kept.handle]
    assert manager.patterns() == ["a.b"]
    assert list(manager.dead_letters) == []
    assert len(manager._index) == 1


def test_collected_while_the_managers_locks_are_held() -> None:
    # the garbage collector can run anywhere, also inside the manager's own critical
    # sections (an allocation in index.add): its callback must not take those locks
    manager = EventManager()
    holder = [Receiver([])]
    manager.on("a.b", holder[0].handle, weak=True)
    done = threading.Event()

    def drop() -> None:
        with manager._index._lock, manager._lock:
            holder.clear()  # the last reference: the weakref callback runs here
        done.set()

    thread = threading.Thread(target=drop, daemon=True)  # a deadlock must not hang the run
    thread.start()
    thread.join(5)
    assert done.is_set(), "the weakref callback waited for a lock its own thread held"
    assert manager.handlers("a.b") == []
    assert len(manager._index) == 0
