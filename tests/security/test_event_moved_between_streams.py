"""One stream's ciphertext planted under an event of another, by someone with the
database only (brief: AAD binding, checked on every backend with rows to rewrite).

The other stream has a data key of the same version (another key), and the planted
event's clear type is copied too: it fails authentication, and the stream it came from
still reads. (A row moved whole to a stream the store does not list is not read at all,
on SQLite and PostgreSQL: removing events is not detected, see docs/security.md.)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pepperpy.event import EncryptionError, EventStore
from pepperpy.event.security import KeyRing, MemoryKeyStore, StreamEncryption
from tests.helpers import store_urls
from tests.security.test_encryption_binding import Raw


@pytest.fixture(params=["sqlite", "postgres"])
async def on_disk(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    async for url in store_urls(request, tmp_path, "moved"):
        yield url


async def test_an_event_moved_to_another_stream_fails_authentication(on_disk: str) -> None:
    crypto = StreamEncryption(KeyRing.generate(), MemoryKeyStore(), on_shredded="error")
    async with EventStore(on_disk, encryption=crypto) as store:
        await store.append("acct.1", {"type": "account.debited", "data": {"amount": 900}})
        await store.append("acct.2", {"type": "account.opened", "data": {}})
        await store.append("acct.2", {"type": "account.opened", "data": {}})
    # acct.1's ciphertext (and its labels) in place of acct.2's second event
    await Raw(on_disk).execute(
        "UPDATE {events} SET data = (SELECT data FROM {events} WHERE stream = 'acct.1'),"
        " type = 'account.debited' WHERE stream = 'acct.2' AND position = 1"
    )
    async with EventStore(on_disk, encryption=crypto) as store:
        with pytest.raises(EncryptionError, match=r"of 'acct.2' failed authentication"):
            await store.get_stream("acct.2")
        with pytest.raises(EncryptionError, match="failed authentication"):
            [event async for event in store.read_all()]
        assert [event.data for event in await store.get_stream("acct.1")] == [{"amount": 900}]
