"""The envelope of encrypted data: the cipher, what a ciphertext is bound to, its format.

An envelope is ``{MARKER: FORMAT, "key": version, "blob": ...}``: the data key version
of its stream that sealed it, and the nonce and AES-256-GCM ciphertext in base64. The
associated data (:func:`associated_data`) names the kind of ciphertext, its stream, its
name (event id, snapshot version, state position) and the caller's context.
"""

from __future__ import annotations

import base64
import functools
import os
from collections.abc import Mapping, Sequence
from typing import Any, TypeGuard

import orjson

from .._deps import require

__all__ = [
    "EVENT",
    "FORMAT",
    "MARKER",
    "NONCE",
    "SNAPSHOT",
    "STATE",
    "Context",
    "aesgcm",
    "associated_data",
    "check_plaintext",
    "describe",
    "is_envelope",
    "not_an_envelope",
    "seal",
    "state_keys",
    "stored_key_version",
]

MARKER = "$pepperpy.encrypted"
_MARKER_BYTES = MARKER.encode()
#: the envelope format written and read (the value under MARKER); the layout of the
#: associated data is part of it, so envelopes of another format are refused, not guessed
FORMAT = 2
#: the kinds of ciphertext, first in the associated data: no event's can equal a snapshot's
EVENT = "event"
SNAPSHOT = "snapshot"
#: a projection's saved state (:meth:`StreamEncryption.encrypt_state`)
STATE = "projection state"
#: more values a ciphertext is bound to (associated data), in a fixed order
Context = Sequence[str | int | bytes | None]
NONCE = 12


def aesgcm(key: bytes) -> Any:
    """An AES-256-GCM cipher with ``key`` (made once per key: it costs microseconds)."""
    return _aesgcm_class()(key)


@functools.cache
def _aesgcm_class() -> Any:
    module = require(
        "cryptography.hazmat.primitives.ciphers.aead", extra="crypto", feature="encryption"
    )
    return module.AESGCM


def associated_data(kind: str, stream: str, name: str | int, context: Context) -> bytes:
    """The associated data of a ciphertext: its kind, stream, name and context, in order.

    A JSON array, so no two different lists of fields give the same bytes (``"ab"`` is
    not ``"a"``, ``"b"``; ``1`` is not ``"1"``; None is not ``""``). Bytes go in as
    ``["<hex>"]``, so they never equal a str. The kind comes first: an event's
    associated data never equals a snapshot's, whatever the event id.
    """
    fields: list[Any] = [kind, stream, name]
    append = fields.append
    for value in context:
        if value.__class__ in _AS_IS:
            append(value)
        elif value.__class__ is bytes:
            append([value.hex()])
        elif isinstance(value, bytearray | memoryview):
            append([bytes(value).hex()])
        elif isinstance(value, str | int) and value.__class__ is not bool:
            append(value)  # a subclass
        else:
            raise TypeError(f"encryption context values are str, int, bytes or None, got {value!r}")
    try:
        return _dumps(fields)
    except orjson.JSONEncodeError as exc:  # a lone surrogate, an int beyond 64 bits
        raise TypeError(f"cannot bind a ciphertext to {fields[1:]!r}: {exc}") from None


_dumps = orjson.dumps
_AS_IS = frozenset({str, int, type(None)})


def check_plaintext(plaintext: object, what: str) -> None:
    """Refuse ``plaintext`` that is not bytes, naming what was given, before anything
    (a new data key included) is written: the cipher's own error named no argument."""
    if not isinstance(plaintext, bytes | bytearray | memoryview):
        hint = (
            ": encode it first (text.encode())"
            if isinstance(plaintext, str)
            else ": serialize it first (json.dumps(data).encode())"
            if isinstance(plaintext, dict | list)
            else ""
        )
        raise TypeError(
            f"{what} must be bytes (serialized data), got {type(plaintext).__name__}{hint}"
        )


def seal(associated: bytes, plaintext: bytes, version: int, cipher: Any) -> dict[str, Any]:
    nonce = os.urandom(NONCE)
    sealed = cipher.encrypt(nonce, plaintext, associated)
    return {MARKER: FORMAT, "key": version, "blob": base64.b64encode(nonce + sealed).decode()}


def describe(kind: str, name: str | int) -> str:
    """``event <id>``, ``the snapshot at version <n>`` or ``the state saved at position
    <n>``, for error messages."""
    if kind == EVENT:
        return f"event {name}"
    if kind == STATE:
        return f"the state saved at position {name}"
    return f"the snapshot at version {name}"


def state_keys(projection: str) -> str:
    """The key store entry holding the data keys of ``projection``'s saved state.

    It starts with ``#`` and holds a space, so it is never a stream's name (a stream
    name is a topic: no whitespace, no ``#`` but as a wildcard, which a topic has not).
    """
    return f"# projection {projection}"


def not_an_envelope(kind: str, stream: str, name: str | int, value: object) -> str:
    """Why ``value`` is refused where an envelope belongs."""
    what = f"{describe(kind, name)} of {stream!r}"
    if isinstance(value, str | bytes | bytearray) and stored_key_version(value):
        # the envelope serialized (kept as a JSON column, say) and handed over as text:
        # it is not plain data, and a message saying so sent the caller the wrong way
        return (
            f"{what} was given as {type(value).__name__}: JSON text of an encryption"
            " envelope, not the envelope itself; pass the dict encrypt() returned"
            " (decode kept JSON text first: json.loads(text))"
        )
    marker = value.get(MARKER) if isinstance(value, Mapping) else None
    if marker is None:
        return (
            f"{what} is not encrypted: plain data where the encrypted store keeps an"
            " envelope (written around the library, or before encryption was turned on);"
            " it is refused, never read as genuine"
        )
    return (
        f"{what} has an encryption envelope of format {marker!r}; this version reads"
        f" format {FORMAT} only"
    )


def is_envelope(value: Any) -> TypeGuard[Mapping[str, Any]]:
    """Whether ``value`` is an envelope of the format this version reads."""
    if value.__class__ is not dict and not isinstance(value, Mapping):
        return False
    marker = value.get(MARKER)
    return marker.__class__ is int and marker == FORMAT


def stored_key_version(stored: str | bytes | bytearray) -> int:
    """The data key version named by stored event data (JSON text); 0 if not encrypted.

    Plain data is only searched for the marker; malformed JSON or a malformed
    envelope also gives 0, left for the decoding of the event to report.
    """
    if isinstance(stored, str):
        if MARKER not in stored:
            return 0
    elif isinstance(stored, bytes | bytearray) and _MARKER_BYTES not in stored:
        return 0
    try:
        value = orjson.loads(stored)
    except orjson.JSONDecodeError:
        return 0
    if not is_envelope(value):
        return 0
    version = value.get("key")
    return version if version.__class__ is int and version > 0 else 0
