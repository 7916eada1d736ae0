"""``append STREAM TYPE JSON`` and ``validate TYPE JSON`` take ``@FILE`` and ``@-`` as
``bus publish`` does: a payload too long for a command line, or made by another program
(``jq ... | pepperpy-event append S T @-``), needs no shell quoting. ``append S T -``
and ``@-`` were read as JSON and refused ('invalid JSON: unexpected end of data')."""

from __future__ import annotations

from pathlib import Path

from tests.cli.conftest import Cli


def test_append_reads_json_from_a_file_and_from_stdin(
    cli: Cli, tmp_path: Path, store_url: str
) -> None:
    (tmp_path / "order.json").write_text('{"order_id": "o-1", "lines": [1, 2]}\n', "utf-8")
    from_file = cli("append", "orders.1", "order.placed", "@order.json", "--store", store_url)
    assert from_file.code == 0, from_file
    piped = cli(
        "append", "orders.1", "order.paid", "@-", "--store", store_url, stdin='{"order_id": "o-1"}'
    )
    assert piped.code == 0, piped
    read = cli("read", "orders.1", "--store", store_url)
    assert read.lines == [
        '0 order.placed {"order_id":"o-1","lines":[1,2]}',
        '1 order.paid {"order_id":"o-1"}',
    ]


def test_a_file_that_cannot_be_read_appends_nothing(cli: Cli, store_url: str) -> None:
    missing = cli("append", "orders.1", "order.placed", "@nowhere.json", "--store", store_url)
    assert missing.code == 1
    assert missing.err == (
        "pepperpy-event: error: JSON @nowhere.json: cannot read 'nowhere.json': "
        "No such file or directory\n"
    )
    bare = cli("append", "orders.1", "order.placed", "@", "--store", store_url)
    assert bare.code == 1
    assert "JSON '@' names no file" in bare.err
    assert cli("stats", "--store", store_url).code == 1  # no store was made


def test_validate_reads_json_from_stdin(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "order.schema.json").write_text(
        '{"type": "object", "required": ["order_id"]}', "utf-8"
    )
    schema = "--schema=order.placed=order.schema.json"
    good = cli("validate", "order.placed", "@-", schema, stdin='{"order_id": "o-1"}')
    assert good.code == 0, good
    assert good.out == "valid order.placed (version 1)\n"
    bad = cli("validate", "order.placed", "@-", schema, stdin="{}")
    assert bad.code == 1
    assert "order_id" in bad.err
