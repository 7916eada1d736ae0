"""A projection over an encrypted store saves its state sealed, and a rebuild erases it.

Its state is derived from decrypted event data. It used to be saved as plain JSON in the
event database (``pepperpy_checkpoints``), so after ``shred_stream`` the "erased" data
was still there for anyone reading the file or a backup, and the state could be edited
undetected.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from pepperpy.event import EncryptionError, EventStore, Projection, SQLiteCheckpointStore
from pepperpy.event.security import KeyRing, SQLiteKeyStore, StreamEncryption

SSN = "078-05-1120"
ROW = "projection:users"


def users(store: EventStore, name: str = "users") -> Projection:
    projection = Projection(name, store)

    @projection.on("user.created")
    def created(state: dict[str, Any], event: Any) -> None:
        state[event.stream] = None if event.data is None else event.data["ssn"]

    return projection


def on_disk(directory: Path, *, but: str = "keys.db") -> bytes:
    """Every byte of the event database's files (the key store kept apart)."""
    return b"".join(
        path.read_bytes() for path in sorted(directory.iterdir()) if not path.name.startswith(but)
    )


def saved_row(db: Path) -> tuple[int, str]:
    with closing(sqlite3.connect(db)) as connection, connection:
        position, state = connection.execute(
            "SELECT position, state FROM pepperpy_checkpoints WHERE name = ?", (ROW,)
        ).fetchone()
    connection.close()
    return int(position), str(state)


def write_row(db: Path, position: int, state: str, name: str = ROW) -> None:
    with (
        closing(sqlite3.connect(db)) as connection,
        connection,
    ):  # someone with write access, no key
        connection.execute(
            "UPDATE pepperpy_checkpoints SET position = ?, state = ? WHERE name = ?",
            (position, state, name),
        )
    connection.close()


@pytest.fixture
def crypto(tmp_path: Path) -> StreamEncryption:
    return StreamEncryption(KeyRing.generate(), SQLiteKeyStore(str(tmp_path / "keys.db")))


async def test_the_state_is_sealed_and_a_rebuild_after_a_shred_erases_it(
    tmp_path: Path, crypto: StreamEncryption
) -> None:
    db = tmp_path / "events.db"
    async with EventStore(f"sqlite:///{db}", encryption=crypto) as store:
        await store.append("user.9", {"type": "user.created", "data": {"ssn": SSN}})
        await store.append("user.8", {"type": "user.created", "data": {"ssn": "kept"}})
        async with users(store) as projection:
            await projection.run()
            assert projection.state == {"user.9": SSN, "user.8": "kept"}
        assert SSN.encode() not in on_disk(tmp_path)  # no table, no page, no WAL frame
        position, sealed = saved_row(db)
        assert json.loads(sealed)["$pepperpy.encrypted"] == 2
        async with users(store) as again:  # a new process loads and unseals it
            assert await again.load() == {"user.9": SSN, "user.8": "kept"}
            assert again.position == position == 1

        await store.shred_stream("user.9")
        async with users(store) as projection:
            await projection.rebuild()  # what docs/security.md says to do after a shred
            assert projection.state == {"user.9": None, "user.8": "kept"}
        # the state saved before the shred (in a backup, say) cannot be read any more
        write_row(db, position, sealed)
        async with users(store) as restored:
            with pytest.raises(EncryptionError, match="shredded"):
                await restored.load()
    await crypto.key_store.close()


@pytest.mark.parametrize(
    "edit",
    ["blob", "position", "plain", "other projection"],
)
async def test_an_edited_state_is_refused(
    tmp_path: Path, crypto: StreamEncryption, edit: str
) -> None:
    db = tmp_path / "events.db"
    async with EventStore(f"sqlite:///{db}", encryption=crypto) as store:
        await store.append("user.9", {"type": "user.created", "data": {"ssn": SSN}})
        await store.append("user.8", {"type": "user.created", "data": {"ssn": "kept"}})
        async with users(store) as projection, users(store, "others") as others:
            await projection.run()
            await others.run()
        position, sealed = saved_row(db)
        envelope = json.loads(sealed)
        if edit == "blob":  # a bit flipped in the ciphertext
            blob = envelope["blob"]
            envelope["blob"] = blob[:20] + ("A" if blob[20] != "A" else "B") + blob[21:]
            write_row(db, position, json.dumps(envelope))
            match = "failed authentication"
        elif edit == "position":  # claimed for another position
            write_row(db, position + 1, sealed)
            match = "failed authentication"
        elif edit == "plain":  # a balance, say, written in clear over the sealed state
            write_row(db, position, json.dumps({"user.9": "forged"}))
            match = "not sealed, but this projection has sealed its state before"
        else:  # another projection's sealed state moved here
            with closing(sqlite3.connect(db)) as connection, connection:
                [(theirs,)] = connection.execute(
                    "SELECT state FROM pepperpy_checkpoints WHERE name = 'projection:others'"
                )
            connection.close()
            write_row(db, position, theirs)
            match = "failed authentication"
        async with users(store) as projection:
            with pytest.raises(EncryptionError, match=match):
                await projection.load()
            with pytest.raises(EncryptionError, match=match):
                await projection.run()
    await crypto.key_store.close()


async def test_a_state_saved_before_encryption_is_sealed_on_first_load(
    tmp_path: Path, crypto: StreamEncryption
) -> None:
    db = tmp_path / "events.db"
    async with EventStore(f"sqlite:///{db}", encryption=crypto) as store:
        await store.append("user.9", {"type": "user.created", "data": {"ssn": SSN}})
        # what a projection of a store without encryption left: its state in clear
        async with SQLiteCheckpointStore(db) as checkpoints:
            await checkpoints.save(ROW, 0, {"user.9": SSN}, previous=None)
        async with users(store) as projection:
            assert await projection.load() == {"user.9": SSN}  # taken once ...
            assert projection.position == 0
        position, state = saved_row(db)
        assert position == 0 and SSN not in state  # ... and sealed at once
        assert json.loads(state)["$pepperpy.encrypted"] == 2
        async with users(store) as projection:
            assert await projection.load() == {"user.9": SSN}
        # from now on a state in clear is refused: it can only be an edit
        write_row(db, 0, json.dumps({"user.9": "forged"}))
        async with users(store) as projection:
            with pytest.raises(EncryptionError, match="refused as tampered"):
                await projection.load()
            await projection.rebuild()  # the way out: fold the events again, sealed
            assert projection.state == {"user.9": SSN}
    await crypto.key_store.close()


async def test_the_sealed_state_round_trips_through_postgres(
    postgres_url: str, tmp_path: Path, crypto: StreamEncryption
) -> None:
    import asyncpg

    async with EventStore(postgres_url, encryption=crypto) as store:
        await store.append("user.9", {"type": "user.created", "data": {"ssn": SSN}})
        async with users(store) as projection:
            await projection.run()
        connection = await asyncpg.connect(postgres_url)
        try:
            state = await connection.fetchval(
                "SELECT convert_from(state, 'UTF8') FROM pepperpy_checkpoints WHERE name = $1", ROW
            )
            assert SSN not in state and "$pepperpy.encrypted" in state
            async with users(store) as projection:
                assert await projection.load() == {"user.9": SSN}
            await connection.execute(
                "UPDATE pepperpy_checkpoints SET position = position + 1 WHERE name = $1", ROW
            )
        finally:
            await connection.close()
        async with users(store) as projection:
            with pytest.raises(EncryptionError, match="failed authentication"):
                await projection.load()
    await crypto.key_store.close()
