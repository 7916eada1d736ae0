"""Collaborators of the wrong type are refused where they are given, naming the parameter.

A URL is natural to pass for a store here (``EventStore``, ``EventBus(transport=)``,
``add_channel`` and ``Projection(state_store=)`` all take URLs), and a word for an
access control or an encryption; each was taken by the constructor and failed at first
use with an ``AttributeError`` from inside the library (``'str' object has no attribute
'read_all'``), after a projection had already created its state store's file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pepperpy.event import (
    Event,
    EventBus,
    EventReplay,
    EventStore,
    MemoryCheckpointStore,
    Projection,
)
from pepperpy.event.security import AccessControl, AuditLog, KeyRing, StreamEncryption


@pytest.mark.parametrize(
    "make",
    [
        lambda store: EventReplay(store),
        lambda store: Projection("sales", store),
    ],
    ids=["EventReplay", "Projection"],
)
def test_a_url_for_the_event_store_is_refused_saying_how_to_open_it(make: Any) -> None:
    with pytest.raises(TypeError) as caught:
        make("sqlite:///events.db")
    assert str(caught.value) == (
        "store must be an EventStore, got 'sqlite:///events.db' "
        "(a URL: pass EventStore('sqlite:///events.db'))"
    )


@pytest.mark.parametrize("store", [None, "events", 42, MemoryCheckpointStore()], ids=repr)
def test_anything_but_an_event_store_is_refused(store: Any) -> None:
    for make in (EventReplay, lambda s: Projection("sales", s)):
        with pytest.raises(TypeError, match=r"^store must be an EventStore, got "):
            make(store)


def test_a_projection_on_a_wrong_store_creates_no_state_store(tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    with pytest.raises(TypeError, match="store must be an EventStore"):
        Projection(
            "sales",
            "sqlite:///events.db",  # type: ignore[arg-type]
            state_store=f"sqlite:///{state}",
        )
    assert not state.exists()


@pytest.mark.parametrize(
    ("make", "name"),
    [
        (lambda v: EventReplay(EventStore(), checkpoints=v), "checkpoints"),
        (lambda v: Projection("p", EventStore(), state_store=v), "state_store"),
    ],
)
def test_checkpoints_must_be_a_checkpoint_store_or_a_url(make: Any, name: str) -> None:
    with pytest.raises(TypeError, match=rf"^{name} must be a CheckpointStore, a URL or None"):
        make(3)
    make(MemoryCheckpointStore())
    make("memory://")
    make(None)


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        ("access", "deny", "an AccessControl or None"),
        ("access", {"default": "deny"}, "an AccessControl or None"),
        ("encryption", "aes", "a StreamEncryption or None"),
        ("encryption", KeyRing.generate(), "a StreamEncryption or None"),
        ("audit", "audit.db", "an AuditLog or None"),
    ],
)
def test_the_stores_security_options_are_checked_at_construction(
    option: str, value: Any, expected: str
) -> None:
    with pytest.raises(TypeError) as caught:
        EventStore(**{option: value})
    assert str(caught.value) == f"{option} must be {expected}, got {value!r}"


def test_the_buses_access_option_is_checked_at_construction() -> None:
    with pytest.raises(TypeError, match=r"^access must be an AccessControl or None, got 'deny'"):
        EventBus(access="deny")  # type: ignore[arg-type]


async def test_the_right_collaborators_are_still_taken() -> None:
    access = AccessControl(default="allow")
    audit = AuditLog()
    encryption = StreamEncryption(KeyRing.generate())
    async with EventStore(encryption=encryption, access=access, audit=audit) as store:
        await store.append("s", Event("a", 1))
        replay = EventReplay(store)
        seen: list[Any] = []
        replay.handle("#", lambda event: seen.append(event.data))
        await replay.replay_stream("s")
        assert seen == [1]
        assert Projection("p", store).store is store
    bus = EventBus(access=access)
    await bus.close()
    audit.close()
