"""``KeyRing({"k1": old, "k2": new})`` without ``primary=`` made the mapping's last key
the primary, so a ring built in another order (keys read from a directory listing or a
secret manager: ``{"k2": new, "k1": old}``) wrapped new data keys under the *old* master
key after a rotation, and retiring that key, as docs/security.md advises once
``rotate()`` returned, made those streams unreadable. A ring of several keys now needs
``primary=``; one key is its own primary, as before."""

from __future__ import annotations

import os

import pytest

from pepperpy.event import ConfigurationError
from pepperpy.event.security import KeyRing, MemoryKeyStore, StreamEncryption

OLD, NEW = os.urandom(32), os.urandom(32)


@pytest.mark.parametrize("keys", [{"k1": OLD, "k2": NEW}, {"k2": NEW, "k1": OLD}])
def test_several_keys_need_a_primary(keys: dict[str, bytes]) -> None:
    with pytest.raises(ConfigurationError, match="needs primary=") as refused:
        KeyRing(keys)
    assert "'k1'" in str(refused.value) and "'k2'" in str(refused.value)
    assert KeyRing(keys, primary="k2").primary == "k2"


def test_one_key_is_its_own_primary_and_an_empty_ring_has_none() -> None:
    assert KeyRing({"k1": OLD}).primary == "k1"
    assert KeyRing().primary is None
    ring = KeyRing({"k1": OLD})
    ring.add("k2", NEW)  # adding keeps the primary until asked
    assert ring.primary == "k1"
    ring.add("k2", NEW, primary=True)
    assert ring.primary == "k2"


async def test_new_keys_are_wrapped_under_the_primary_named() -> None:
    keys = MemoryKeyStore()
    crypto = StreamEncryption(KeyRing({"k2": NEW, "k1": OLD}, primary="k2"), keys)
    await crypto.encrypt("customer.1", "e1", b"{}")
    assert [master for master, _ in (await keys.load("customer.1")).values()] == ["k2"]
