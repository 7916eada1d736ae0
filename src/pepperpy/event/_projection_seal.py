"""A projection's state over an encrypted store: sealed when saved, unsealed when loaded.

The state is derived from decrypted data, so with ``store.encryption`` it is saved
sealed under a data key of the projection's own, bound to its name and position.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import _json
from ._errors import EncryptionError

if TYPE_CHECKING:
    from ._checkpoints import Checkpoint
    from .security import StreamEncryption

__all__ = ["seal", "unseal"]


async def seal(
    encryption: StreamEncryption | None, name: str, position: int, state: Any
) -> tuple[Any, Any]:
    """``state`` as it reads back from JSON (what the projection keeps in memory), and
    what to save: that, or it sealed for projection ``name`` at ``position``."""
    serialized = _json.dumps(state)
    stored = _json.loads(serialized)
    if encryption is None:
        return stored, stored
    return stored, await encryption.encrypt_state(name, position, serialized)


async def unseal(
    encryption: StreamEncryption | None, name: str, saved: Checkpoint
) -> tuple[Any, bool]:
    """The state of ``saved``, and whether it has to be sealed (saved in clear).

    Without encryption the state is as saved. With it, the state must be what
    :meth:`~pepperpy.event.security.StreamEncryption.encrypt_state` sealed for projection
    ``name`` at this position: anything else raises :class:`EncryptionError`. The one
    exception is a state in clear text of a projection that never sealed one (no key for
    it in the key store): saved before the store had encryption, it is taken once and
    sealed at once.
    """
    if encryption is None:
        return saved.state, False
    if encryption.is_encrypted(saved.state):
        plaintext = await encryption.decrypt_state(name, saved.position, saved.state)
        return _json.loads(plaintext), False
    if await encryption.has_state_keys(name):
        raise EncryptionError(
            f"projection {name!r}: the state saved at position {saved.position} is"
            " not sealed, but this projection has sealed its state before: written"
            " around the library, refused as tampered; rebuild() the projection"
        )
    return saved.state, True
