"""What a pyee or blinker user writes first, and what EventManager makes of it.

Each test is one habit brought from those libraries (docs/manager.md, "Coming from pyee
or blinker"): where the manager differs, the error says what to write instead.
"""

from __future__ import annotations

import asyncio

import pytest

from pepperpy.event import (
    BufferFullError,
    ClosedError,
    Event,
    EventManager,
    EventProcessor,
    PatternError,
)


def test_a_method_decorated_in_its_class_body_says_to_register_the_bound_method() -> None:
    manager = EventManager()
    with pytest.raises(TypeError) as caught:

        class Mailer:
            @manager.on("user.created")  # blinker's @signal.connect habit
            def welcome(self, event: Event) -> None: ...

    message = str(caught.value)
    assert "Mailer.welcome" in message and "takes (self, event)" in message
    assert "register the bound method instead (self.welcome" in message
    assert manager.handlers("user.created") == []


def test_the_hint_names_cls_for_a_plain_function_taking_cls() -> None:
    processor = EventProcessor()

    def rebuild(cls: type, event: Event) -> None: ...

    with pytest.raises(TypeError, match=r"bound method instead \(cls\.rebuild"):
        processor.handle("user.*", rebuild)


def test_no_hint_for_a_function_that_is_not_a_method() -> None:
    manager = EventManager()

    def pair(event: Event, other: Event) -> None: ...

    with pytest.raises(TypeError) as caught:
        manager.on("user.created", pair)
    assert "bound method" not in str(caught.value)


def test_the_bound_method_is_taken() -> None:
    manager = EventManager()

    class Mailer:
        def __init__(self) -> None:
            manager.on("user.created", self.welcome)

        def welcome(self, event: Event) -> None: ...

    mailer = Mailer()
    assert manager.handlers("user.created") == [mailer.welcome]


# -- listening(): blinker's connected_to, for tests -----------------------------------------


async def test_listening_registers_for_the_block_only() -> None:
    manager = EventManager()
    seen: list[str] = []
    with manager.listening("user.*", lambda event: seen.append(event.type)) as handler:
        assert manager.handlers("user.created") == [handler]
        await manager.emit("user.created")
    await manager.emit("user.deleted")
    assert seen == ["user.created"]
    assert manager.handlers("user.created") == []


async def test_listening_removes_its_registration_when_the_block_raises() -> None:
    manager = EventManager()
    seen: list[Event] = []
    with pytest.raises(KeyError), manager.listening("user.*", seen.append):
        raise KeyError("test failed")
    await manager.emit("user.created")
    assert seen == []


async def test_listening_leaves_the_handlers_other_registrations() -> None:
    # off() would remove every registration of the handler under the pattern: the one
    # the application made too
    manager = EventManager()
    seen: list[str] = []

    def record(event: Event) -> None:
        seen.append(event.type)

    manager.on("user.*", record)
    with manager.listening("user.*", record, priority=5):
        assert manager.handlers("user.created") == [record, record]
        manager.on("user.*", record)  # made inside the block: stays too
    assert manager.handlers("user.created") == [record, record]
    await manager.emit("user.created")
    assert seen == ["user.created", "user.created"]


async def test_listening_once_that_fired_leaves_quietly() -> None:
    manager = EventManager()
    seen: list[Event] = []
    with manager.listening("user.created", seen.append, once=True):
        await manager.emit("user.created")
        await manager.emit("user.created")
    assert len(seen) == 1 and manager.handlers("user.created") == []


async def test_listening_checks_what_on_checks() -> None:
    manager = EventManager(max_listeners=1)
    with pytest.raises(PatternError):
        with manager.listening("user..created", print):
            pass
    with pytest.raises(TypeError, match="priority must be an int"):
        with manager.listening("user.*", print, priority=True):
            pass
    with pytest.raises(TypeError, match="cannot be called as handler"):
        with manager.listening("user.*", lambda: None):
            pass
    assert manager.handlers("user.created") == []
    await manager.close()
    with pytest.raises(ClosedError):
        with manager.listening("user.*", print):
            pass


# -- errors that say what to write instead ------------------------------------------------


async def test_buffer_full_says_how_to_wait() -> None:
    manager = EventManager(buffer_size=1)
    release = asyncio.Event()

    @manager.on("image.resize")
    async def resize(event: Event) -> None:
        await release.wait()

    manager.emit_nowait("image.resize")
    with pytest.raises(BufferFullError, match=r"await emit\(\.\.\.\) to wait for a slot"):
        manager.emit_nowait("image.resize")
    release.set()
    await manager.close()


def test_emit_nowait_from_a_script_names_asyncio_run() -> None:
    manager = EventManager()
    with pytest.raises(RuntimeError, match=r"asyncio\.run\(manager\.emit\(\.\.\.\)\)"):
        manager.emit_nowait("user.created")
    seen: list[Event] = []
    manager.on("user.created", seen.append)
    asyncio.run(manager.emit("user.created"))  # what the message says works
    assert len(seen) == 1
