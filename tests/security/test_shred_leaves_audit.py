"""What a shred leaves in the audit log: its entries naming the stream and event ids.

docs/security.md says so (an entry cannot be removed without breaking the chain), and
to name a stream by an opaque id where its name is personal data. Held to it here.
"""

from __future__ import annotations

from pepperpy.event import EventStore
from pepperpy.event.security import AuditLog, KeyRing, MemoryKeyStore, StreamEncryption


async def test_the_audit_log_keeps_naming_a_shredded_stream() -> None:
    log = AuditLog()
    crypto = StreamEncryption(KeyRing.generate(), MemoryKeyStore())
    async with EventStore("memory://", encryption=crypto, audit=log) as store:
        result = await store.append("user.alice@example.com", {"type": "user.created", "data": {}})
        await store.shred_stream("user.alice@example.com")
        (event,) = await store.get_stream("user.alice@example.com")
    assert event.data is None and event.metadata["pepperpyshredded"] is True
    entries = log.entries()
    assert [(entry.action, entry.target) for entry in entries] == [
        ("append", "user.alice@example.com"),
        ("shred", "user.alice@example.com"),
    ]
    assert event.id in str(entries[0].details) and result.global_position is not None
    assert log.verify().ok
