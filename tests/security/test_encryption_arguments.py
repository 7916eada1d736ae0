"""StreamEncryption names a wrong argument when it is made, not at the first append.

``StreamEncryption(None, None)`` used to be accepted: the first encrypted append then
failed with an ``AttributeError`` from inside (``'NoneType' object has no attribute
...``), and a key store given as a path string was silently replaced by a memory one
when empty, or failed later when not.
"""

from __future__ import annotations

from typing import Any

import pytest

from pepperpy.event import ConfigurationError
from pepperpy.event.security import KeyRing, MemoryKeyStore, StreamEncryption


@pytest.mark.parametrize("keyring", [None, "secret", b"\x00" * 32, {"k1": b"\x00" * 32}])
def test_a_keyring_that_is_not_a_keyring_is_refused(keyring: Any) -> None:
    with pytest.raises(TypeError, match=r"keyring must be a KeyRing .*got "):
        StreamEncryption(keyring, MemoryKeyStore())


@pytest.mark.parametrize("key_store", ["keys.db", "", "sqlite:///keys.db", 0, object()])
def test_a_key_store_that_is_not_a_key_store_is_refused(key_store: Any) -> None:
    with pytest.raises(TypeError, match=r"key_store must be a KeyStore .*got "):
        StreamEncryption(KeyRing.generate(), key_store)


def test_on_shredded_names_what_was_given() -> None:
    with pytest.raises(ConfigurationError, match=r"'redact' or 'error', got 'drop'"):
        StreamEncryption(KeyRing.generate(), on_shredded="drop")


def test_the_documented_forms_are_accepted() -> None:
    crypto = StreamEncryption(KeyRing.generate())
    assert isinstance(crypto.key_store, MemoryKeyStore)
    store = MemoryKeyStore()
    assert StreamEncryption(KeyRing.generate(), store, on_shredded="error").key_store is store
