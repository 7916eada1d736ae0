"""``validate`` over a store written with ``encryption=``: the command holds no key, so
an encrypted event's data, read here, is its envelope. Every schema refused the
envelope, so each encrypted event was reported invalid (exit 1): a false alarm."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from pepperpy.event import Event, EventStore
from pepperpy.event.security import KeyRing, MemoryKeyStore, StreamEncryption

from .conftest import Cli


async def _write(url: str) -> None:
    sealed = StreamEncryption(KeyRing.generate(), MemoryKeyStore())
    async with EventStore(url, encryption=sealed) as store:
        await store.append("user.9", Event("user.visited", {"name": "ann"}))
    async with EventStore(url) as plain:  # an event written without encryption: checked
        await plain.append("user.8", Event("user.visited", {"nom": "bob"}))


def test_encrypted_events_are_counted_not_failed(cli: Cli, store_url: str, tmp_path: Path) -> None:
    asyncio.run(_write(store_url))
    (tmp_path / "visited.json").write_text(json.dumps({"type": "object", "required": ["name"]}))
    done = cli("validate", "--schema", "user.visited=visited.json", "--store", store_url)
    assert done.code == 1, done.err
    [line] = done.lines  # the plain event only
    assert line.startswith("1 user.8:0 user.visited: name: field required"), line
    assert done.err.splitlines()[0] == (
        "checked 1, invalid 1, without a schema 0, encrypted 1 (not checked: the command "
        "holds no key)"
    )
    only_sealed = cli(
        "validate",
        "--schema",
        "user.visited=visited.json",
        "--streams",
        "user.9",
        "--store",
        store_url,
    )
    assert (only_sealed.code, only_sealed.out) == (0, ""), only_sealed.err


async def _sealed_only(url: str) -> None:
    sealed = StreamEncryption(KeyRing.generate(), MemoryKeyStore())
    async with EventStore(url, encryption=sealed) as store:
        await store.append("user.9", Event("user.visited", {"name": "ann"}))


async def _count(url: str) -> int:
    async with EventStore(url) as store:
        return len([event async for event in store.read_all(0)])


def test_append_refuses_an_encrypted_store(cli: Cli, store_url: str) -> None:
    """The command holds no key: its event was stored as plain data, which the
    application's encrypted store then refused to read (EncryptionError: ... is not
    encrypted), breaking its reads of the stream."""
    asyncio.run(_sealed_only(store_url))
    for stream in ("user.9", "user.10"):  # the encrypted stream, and a new one
        done = cli("append", stream, "user.visited", '{"name": "eve"}', "--store", store_url)
        assert done.code == 1, done.out
        assert done.err.startswith("pepperpy-event: error: "), done.err
        assert "holds encrypted events (written with encryption=)" in done.err
        assert "append from the application, with its encryption" in done.err
    assert asyncio.run(_count(store_url)) == 1


def test_demo_refuses_an_encrypted_store(cli: Cli, store_url: str) -> None:
    asyncio.run(_sealed_only(store_url))
    done = cli("demo", "--store", store_url)
    assert done.code == 1, done.out
    assert "holds encrypted events (written with encryption=)" in done.err
    assert done.out == ""
    assert asyncio.run(_count(store_url)) == 1
