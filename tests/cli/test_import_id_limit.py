"""``import`` holds ids, sources and subjects to the limits append holds an Event's to
(at most 1,024 bytes in UTF-8, no NUL): a longer one is refused at its line, before
anything is written, as any other line no append could have written."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from pepperpy.event import Event, EventStore, StoreError, import_store

from .conftest import Cli
from .test_cli import ok, one_line_error
from .test_import_checks import exported, import_changed


def test_append_refuses_such_an_id() -> None:  # the limit import now applies
    with pytest.raises(ValueError, match="longer than 1024 bytes"):
        Event("t.x", {}, id="i" * 2000)


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"id": "i" * 2000}, "line 3: id 'iiii"),
        ({"id": "é" * 513}, "line 3: id 'éééé"),
        ({"id": "a\x00b"}, "line 3: id 'a\\x00b' contains a NUL character"),
        ({"source": "s" * 1025}, "line 3: source 'ssss"),
        ({"subject": "s" * 2000}, "line 3: subject 'ssss"),
    ],
)
def test_an_identity_append_refuses_is_refused_at_its_line(
    change: dict[str, object], said: str, cli: Cli, store_url: str, tmp_path: Path
) -> None:
    done = import_changed(cli, store_url, tmp_path, change)
    one_line_error(done, said, "nothing was written")
    if "x00" not in said:
        assert "is longer than 1024 bytes in UTF-8" in done.err
    assert not (tmp_path / "copy.db").exists()  # the file is checked before the store opens


def test_an_id_of_exactly_the_limit_still_imports(cli: Cli, store_url: str, tmp_path: Path) -> None:
    header, rows = exported(cli, store_url, tmp_path)
    rows[1]["id"] = "é" * 512  # 1,024 bytes
    good = tmp_path / "good.jsonl"
    good.write_text("\n".join([header, *map(json.dumps, rows)]) + "\n", encoding="utf-8")
    destination = f"sqlite:///{tmp_path}/copy.db"
    ok(cli("import", "good.jsonl", "--store", destination))
    assert len(ok(cli("read", "a.1", "--store", destination)).lines) == 2


def test_import_store_writes_nothing_of_a_file_with_a_long_id(
    cli: Cli, store_url: str, tmp_path: Path
) -> None:
    header, rows = exported(cli, store_url, tmp_path)
    rows[1]["id"] = "i" * 2000
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join([header, *map(json.dumps, rows)]) + "\n", encoding="utf-8")
    destination = f"sqlite:///{tmp_path}/copy.db"

    async def attempt() -> None:
        async with EventStore(destination) as store:
            with pytest.raises(StoreError, match="line 3: id .* is longer than 1024 bytes"):
                await import_store(store, str(bad), batch_size=1)
            assert await store.head() is None  # nothing at all was written

    asyncio.run(attempt())
