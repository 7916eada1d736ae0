"""``append ... --metadata`` takes ``@FILE`` and ``@-`` as the JSON data argument does.

``--metadata @meta.json`` was parsed as JSON text and refused with "--metadata: invalid
JSON ... char 0", though the data argument beside it read ``@FILE``."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.conftest import Cli


def _metadata(cli: Cli, store_url: str) -> list[dict[str, object]]:
    read = cli("read", "orders.1", "--json", "--store", store_url)
    assert read.code == 0, read
    return [json.loads(line)["metadata"] for line in read.lines]


def test_metadata_from_a_file_and_from_stdin(cli: Cli, tmp_path: Path, store_url: str) -> None:
    (tmp_path / "meta.json").write_text('{"by": "support", "ticket": 7}\n', "utf-8")
    from_file = cli(
        "append", "orders.1", "order.placed", "{}", "--metadata", "@meta.json", "--store", store_url
    )
    assert from_file.code == 0, from_file
    piped = cli(
        "append",
        "orders.1",
        "order.paid",
        "{}",
        "--metadata",
        "@-",
        "--store",
        store_url,
        stdin='{"by": "jq"}',
    )
    assert piped.code == 0, piped
    metadata = _metadata(cli, store_url)
    assert [m.get("by") for m in metadata] == ["support", "jq"]
    assert metadata[0].get("ticket") == 7


def test_metadata_file_errors_name_the_option(cli: Cli, tmp_path: Path, store_url: str) -> None:
    missing = cli(
        "append", "orders.1", "t", "{}", "--metadata", "@nowhere.json", "--store", store_url
    )
    assert missing.code == 1
    assert missing.err == (
        "pepperpy-event: error: --metadata @nowhere.json: cannot read 'nowhere.json': "
        "No such file or directory\n"
    )
    bare = cli("append", "orders.1", "t", "{}", "--metadata", "@", "--store", store_url)
    assert bare.code == 1
    assert "--metadata '@' names no file" in bare.err
    (tmp_path / "list.json").write_text("[1, 2]", "utf-8")
    not_object = cli(
        "append", "orders.1", "t", "{}", "--metadata", "@list.json", "--store", store_url
    )
    assert not_object.code == 1
    assert "--metadata must be a JSON object" in not_object.err
    (tmp_path / "bad.json").write_text("{by: 1}", "utf-8")
    bad = cli("append", "orders.1", "t", "{}", "--metadata", "@bad.json", "--store", store_url)
    assert bad.code == 1
    assert bad.err.startswith("pepperpy-event: error: --metadata @bad.json: invalid JSON")
    assert cli("stats", "--store", store_url).code == 1  # no store was made


def test_data_and_metadata_cannot_both_read_stdin(cli: Cli, store_url: str) -> None:
    both = cli(
        "append", "orders.1", "t", "@-", "--metadata", "@-", "--store", store_url, stdin="{}"
    )
    assert both.code == 1
    assert "JSON and --metadata cannot both be @-" in both.err
