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
