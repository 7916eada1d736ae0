"""``import`` refuses a line no append could have written, naming it, before writing.

Data and metadata are always JSON (an encrypted event's data too: its envelope is a
JSON object), a version is 1 or more, and each stream's positions run from 0, one after
another, in an export.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from pepperpy.event import Event

from .conftest import Cli, Result
from .test_cli import ok, one_line_error, seed


def exported(cli: Cli, store_url: str, tmp_path: Path) -> tuple[str, list[dict[str, object]]]:
    seed(store_url, [("a.1", Event("t.x", {"k": i})) for i in range(2)])
    ok(cli("export", "ok.jsonl", "--store", store_url))
    header, *rows = (tmp_path / "ok.jsonl").read_text(encoding="utf-8").splitlines()
    return header, [json.loads(row) for row in rows]


def import_changed(cli: Cli, store_url: str, tmp_path: Path, change: dict[str, object]) -> Result:
    """Import an export of two events whose second line got ``change``, into a new
    SQLite file (``copy.db``); what the command did."""
    header, rows = exported(cli, store_url, tmp_path)
    rows[1].update(change)
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join([header, *map(json.dumps, rows)]) + "\n", encoding="utf-8")
    return cli("import", "bad.jsonl", "--store", f"sqlite:///{tmp_path}/copy.db")


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"metadata": b64(b"not json")}, "line 3: metadata is base64 but not of JSON"),
        ({"data": b64(b"\x00")}, "line 3: data is base64 but not of JSON"),
        ({"version": 0}, "line 3: version must be an integer from 1 to"),
        ({"position": 5}, "line 3: the event at global position 1 is at position 5"),
    ],
)
def test_a_line_no_append_could_write_is_refused(
    change: dict[str, object], said: str, cli: Cli, store_url: str, tmp_path: Path
) -> None:
    done = import_changed(cli, store_url, tmp_path, change)
    one_line_error(done, said, "nothing was written")
    assert "empty" not in done.err
    assert not (tmp_path / "copy.db").exists()  # the file is checked before the store opens


def test_a_good_export_still_imports(cli: Cli, store_url: str, tmp_path: Path) -> None:
    exported(cli, store_url, tmp_path)
    destination = f"sqlite:///{tmp_path}/copy.db"
    ok(cli("import", "ok.jsonl", "--store", destination))
    assert ok(cli("read", "a.1", "--store", destination)).lines == [
        '0 t.x {"k":0}',
        '1 t.x {"k":1}',
    ]
