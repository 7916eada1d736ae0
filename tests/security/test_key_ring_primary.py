"""KeyRing.primary set to an id the ring does not hold, and master keys given as text.

``ring.primary = "k2"`` before adding ``k2`` was accepted, and the first encryption
raised a bare ``KeyError: 'k2'``; a key given as its base64 text was refused as "must be
32 bytes" without saying what was given."""

from __future__ import annotations

import base64
import os

import pytest

from pepperpy.event import ConfigurationError
from pepperpy.event.security import KeyRing, StreamEncryption


async def test_a_primary_not_in_the_ring_is_refused_when_set() -> None:
    ring = KeyRing.generate("k1")
    with pytest.raises(ConfigurationError, match=r"primary key 'k2' is not in the key ring"):
        ring.primary = "k2"
    assert ring.primary == "k1"  # unchanged: the ring still encrypts
    crypto = StreamEncryption(ring)
    envelope = await crypto.encrypt("user.1", "e1", b"{}")
    assert await crypto.decrypt("user.1", "e1", envelope) == b"{}"
    ring.add("k2", os.urandom(32))
    ring.primary = "k2"  # once it is there
    assert ring.primary_key()[0] == "k2"


def test_a_master_key_given_as_text_says_how_to_decode_it() -> None:
    text = base64.b64encode(os.urandom(32)).decode()
    with pytest.raises(ConfigurationError) as refused:
        KeyRing({"k1": text})  # type: ignore[dict-item]
    message = str(refused.value)
    assert "got a str of 44 characters" in message and "base64.b64decode" in message
    assert text not in message  # the key itself is never shown
    with pytest.raises(ConfigurationError, match="got bytes of 16 bytes"):
        KeyRing({"k1": os.urandom(16)})
