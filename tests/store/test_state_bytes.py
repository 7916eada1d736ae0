"""Bytes in a snapshot's or a checkpoint's state are refused before anything is written.

They read back as their base64 text on every backend (a str where bytes went in): JSON
has no bytes, and a state, unlike an event, has no metadata to mark them in (which is
how an event's whole-bytes payload reads back as bytes). Refused up front with
``SerializationError`` (a ``TypeError``) naming where they are, as the other values a
state could not read back as saved (a set, an int key) are refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from pepperpy.event import EventStore, SerializationError
from pepperpy.event._checkpoints import open_checkpoint_store


@dataclass
class Blob:
    name: str
    content: bytes


STATES: list[tuple[Any, str]] = [
    (b"\x00\xffhi", r"^snapshot state: bytes are not kept"),
    (bytearray(b"x"), r"^snapshot state: bytes"),
    ({"avatar": b"\x89PNG"}, r"^snapshot state\['avatar'\]: bytes"),
    ({"files": [{"n": 1}, {"raw": memoryview(b"y")}]}, r"^snapshot state\['files'\]\[1\]\['raw'\]"),
    ({"blob": Blob("a", b"z")}, r"^snapshot state\['blob'\]\['content'\]"),
]
IDS = ["bytes", "bytearray", "nested", "deep memoryview", "dataclass field"]


@pytest.mark.parametrize(("state", "where"), STATES, ids=IDS)
async def test_a_snapshot_with_bytes_is_refused(any_store_url: str, state: Any, where: str) -> None:
    async with EventStore(any_store_url) as store:
        await store.append("f.1", {"type": "t.x", "data": {}})
        with pytest.raises(SerializationError, match=where) as caught:
            await store.save_snapshot("f.1", state, 0)
        assert isinstance(caught.value, TypeError)
        assert "base64" in str(caught.value)
        assert await store.load_snapshot("f.1") is None


@pytest.mark.parametrize(("state", "where"), STATES, ids=IDS)
async def test_a_checkpoint_state_with_bytes_is_refused(
    any_store_url: str, state: Any, where: str
) -> None:
    checkpoints = open_checkpoint_store(any_store_url)
    try:
        where = where.replace("snapshot state", "checkpoint state")
        with pytest.raises(SerializationError, match=where):
            await checkpoints.save("c", 3, state, previous=None)
        assert await checkpoints.load("c") is None
    finally:
        await checkpoints.close()


async def test_states_without_bytes_still_round_trip(any_store_url: str) -> None:
    state = {"name": "x", "text": "AP8=", "n": [1, 2.5, None, True]}
    async with EventStore(any_store_url) as store:
        await store.append("f.1", {"type": "t.x", "data": {}})
        await store.save_snapshot("f.1", state, 0)
        snapshot = await store.load_snapshot("f.1")
        assert snapshot is not None and snapshot.state == state
    checkpoints = open_checkpoint_store(any_store_url)
    try:
        await checkpoints.save("c", 3, state, previous=None)
        saved = await checkpoints.load("c")
        assert saved is not None and saved.state == state
    finally:
        await checkpoints.close()
