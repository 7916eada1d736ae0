"""Calling ``StreamEncryption`` directly (docs/security.md's first example) with the
wrong kind of value is refused naming what was wrong, before anything is written.

``encrypt(stream, id, {"ssn": ...})`` (or a str) raised the cipher's own ``TypeError``
("Cannot convert <class 'dict'> instance to a buffer"), naming no argument, after the
stream's data key had been made; ``decrypt`` given an envelope kept as JSON text said
the data "is not encrypted: plain data", sending the caller the wrong way.
"""

from __future__ import annotations

import json

import pytest

from pepperpy.event import EncryptionError
from pepperpy.event.security import KeyRing, MemoryKeyStore, StreamEncryption


@pytest.mark.parametrize(
    ("plaintext", "hint"),
    [({"ssn": "078-05-1120"}, "json.dumps"), ("078-05-1120", "encode()"), (7, "got int")],
)
async def test_plaintext_that_is_not_bytes_is_refused_before_a_key_is_made(
    plaintext: object, hint: str
) -> None:
    keys = MemoryKeyStore()
    crypto = StreamEncryption(KeyRing.generate(), keys)
    calls = [
        lambda: crypto.encrypt("user.1", "e1", plaintext),  # type: ignore[arg-type]
        lambda: crypto.encrypt_many("user.1", [("e1", b"{}", ()), ("e2", plaintext, ())]),  # type: ignore[list-item]
        lambda: crypto.encrypt_snapshot("user.1", 0, plaintext),  # type: ignore[arg-type]
        lambda: crypto.encrypt_state("users", 0, plaintext),  # type: ignore[arg-type]
    ]
    for call in calls:
        with pytest.raises(TypeError, match="must be bytes") as refused:
            await call()
        assert hint in str(refused.value)
    assert await keys.load("user.1") == {}  # no data key was made for nothing


async def test_encrypt_many_names_the_item() -> None:
    crypto = StreamEncryption(KeyRing.generate())
    with pytest.raises(TypeError, match="item 1 must be bytes"):
        await crypto.encrypt_many("user.1", [("e1", b"{}", ()), ("e2", "text", ())])  # type: ignore[list-item]


async def test_bytes_like_plaintext_is_taken() -> None:
    crypto = StreamEncryption(KeyRing.generate())
    for plaintext in (b"{}", bytearray(b"{}"), memoryview(b"{}")):
        envelope = await crypto.encrypt("user.1", "e1", plaintext)
        assert await crypto.decrypt("user.1", "e1", envelope) == b"{}"


async def test_an_envelope_kept_as_json_text_is_named_as_such() -> None:
    crypto = StreamEncryption(KeyRing.generate())
    envelope = await crypto.encrypt("user.1", "e1", b'{"ssn": "078-05-1120"}')
    for kept in (json.dumps(envelope), json.dumps(envelope).encode()):
        with pytest.raises(EncryptionError) as refused:
            await crypto.decrypt("user.1", "e1", kept)
        message = str(refused.value)
        assert "JSON text of an encryption envelope" in message
        assert "json.loads" in message and "not encrypted" not in message
        assert await crypto.decrypt("user.1", "e1", json.loads(kept)) == (b'{"ssn": "078-05-1120"}')
    # plain text is still plain data
    with pytest.raises(EncryptionError, match="is not encrypted: plain data"):
        await crypto.decrypt("user.1", "e1", '{"ssn": "078-05-1120"}')
