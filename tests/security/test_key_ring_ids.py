"""A master key id names one key: ``KeyRing.add`` refuses it for another key.

``add("k1", other)`` (meant as ``"k2"``) used to replace ``k1`` silently: data keys
wrapped before and after both named ``k1`` under two different keys, so no ring could
read both, and ``rotate()`` failed at the first key of the other kind.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pepperpy.event import ConfigurationError, EventStore
from pepperpy.event.security import KeyRing, SQLiteKeyStore, StreamEncryption

OLD = bytes(range(32))
OTHER = bytes(range(1, 33))


def test_another_key_under_an_id_in_the_ring_is_refused() -> None:
    ring = KeyRing({"k1": OLD}, primary="k1")
    with pytest.raises(ConfigurationError, match="master key 'k1' is already in the key ring"):
        ring.add("k1", OTHER, primary=True)
    assert ring.key("k1") == OLD and ring.primary == "k1"


def test_the_same_key_again_is_accepted() -> None:
    ring = KeyRing({"k1": OLD, "k2": OTHER}, primary="k2")
    ring.add("k1", bytes(OLD))  # an equal copy: nothing changes
    assert ring.primary == "k2" and ring.key("k1") == OLD
    ring.add("k1", bytes(OLD), primary=True)
    assert ring.primary == "k1"


@pytest.mark.parametrize("key_id", ["", "a.b", 7, None])
def test_a_bad_key_id_is_a_configuration_error(key_id: object) -> None:
    with pytest.raises(ConfigurationError, match="invalid master key id"):
        KeyRing().add(key_id, OLD)  # type: ignore[arg-type]


async def test_events_written_after_a_refused_add_read_with_the_first_key(
    tmp_path: Path,
) -> None:
    ring = KeyRing({"k1": OLD}, primary="k1")
    url = f"sqlite:///{tmp_path / 'events.db'}"
    async with SQLiteKeyStore(str(tmp_path / "keys.db")) as keys:
        async with EventStore(url, encryption=StreamEncryption(ring, keys)) as store:
            await store.append("user.1", {"type": "a", "data": {"n": 1}})
            with pytest.raises(ConfigurationError, match="'k1'"):
                ring.add("k1", os.urandom(32), primary=True)
            await store.append("user.2", {"type": "a", "data": {"n": 2}})
        reader = StreamEncryption(KeyRing({"k1": OLD}, primary="k1"), keys)
        async with EventStore(url, encryption=reader) as store:
            for stream, n in (("user.1", 1), ("user.2", 2)):
                assert [e.data for e in await store.get_stream(stream)] == [{"n": n}]
