"""Errors name what the user typed: the option or argument, not the library's parameter."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .conftest import Cli
from .test_cli import ok, one_line_error

MEMORY = ("--store", "memory://")
DEEP = "[" * 1000 + "]" * 1000

#: (arguments, fragments of the one error line, fragments it must not hold)
WORDING: list[tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = [
    (("replay", "--from", "yesterday", *MEMORY), ("--from 'yesterday'", "ISO-8601"), ("start_",)),
    (("replay", "--to", "soon", *MEMORY), ("--to 'soon'",), ("end_time",)),
    (
        ("replay", "--from", "2024-01-01T00:00:00", *MEMORY),
        ("--from '2024-01-01T00:00:00' is naive",),
        ("start_",),
    ),
    # a date alone is quoted as typed, not as the midnight it parses to
    (("replay", "--from", "2020-01-01", *MEMORY), ("--from '2020-01-01' is naive",), ("T00",)),
    (("replay", "--to", " 2020-01-01 ", *MEMORY), ("--to ' 2020-01-01 ' is naive",), ("T00",)),
    (
        ("replay", "--from", "2024-02-01T00:00Z", "--to", "2024-01-01T00:00:00Z", *MEMORY),
        ("--from '2024-02-01T00:00Z' is after --to '2024-01-01T00:00:00Z'",),
        ("start_time", "+00:00"),
    ),
    (("replay", "--speed", "0", *MEMORY), ("--speed must be a number > 0",), ("None",)),
    (("replay", "--speed", "nan", *MEMORY), ("--speed must be a number > 0",), ()),
    (("replay", "--speed", "1", "--max-gap", "nan", *MEMORY), ("--max-gap must be",), ("max_",)),
    (
        ("replay", "--stream", "s.*", *MEMORY),
        ("--stream 's.*' is not a stream name",),
        ("pattern",),
    ),
    (("append", "", "t1", "1", *MEMORY), ("STREAM is empty",), ("pattern",)),
    (
        ("append", "s1", "a..b", "1", *MEMORY),
        ("TYPE 'a..b' is not an event type", "two dots", "at character 2"),
        ("invalid data", "$.type"),
    ),
    (("read", "s1.*", *MEMORY), ("STREAM 's1.*' is not a stream name", "wildcard"), ("pattern",)),
    (("audit", "verify", "audit.db", "--expect-head", "zz"), ("--expect-head", "64 hex"), ("_",)),
    (("serve", "--allow-host", "", *MEMORY), ("--allow-host needs a host name",), ()),
    (("serve", "--allow-host", " ", *MEMORY), ("--allow-host needs a host name",), ()),
]


def test_messages_name_what_was_typed(cli: Cli) -> None:
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda case: cli(*case[0]), WORDING))
    for (args, wanted, unwanted), result in zip(WORDING, results, strict=True):
        try:
            one_line_error(result, *wanted)
            for fragment in unwanted:
                assert fragment not in result.err, result.err
        except AssertionError as exc:
            raise AssertionError(f"pepperpy-event {' '.join(args)}: {exc}") from None


def test_validate_names_the_schema_file_at_fault(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "good.json").write_text(json.dumps({"type": "object"}))
    (tmp_path / "bad.json").write_text(json.dumps({"type": "nonsense"}))
    both = ("--schema", "t1=good.json", "--schema", "t2=bad.json")
    one_line_error(cli("validate", "t1", "{}", *both), "--schema t2=bad.json: ", "nonsense")
    zero = cli("validate", "t1", "{}", "--schema", "t1@0=good.json")
    one_line_error(zero, "--schema t1@0=good.json: ", "version after @", ">= 1")
    twice = cli("validate", "t1", "{}", "--schema", "t1=good.json", "--schema", "t1=bad.json")
    one_line_error(twice, "--schema t1=bad.json: ", "already has a schema")
    bad_type = cli("validate", "t1", "{}", "--schema", "t..1=good.json")
    one_line_error(bad_type, "--schema t..1=good.json: TYPE 't..1' is not an event type")
    assert ok(cli("validate", "t1", "{}", *both[:2])).lines == ["valid t1 (version 1)"]


def test_validator_module_errors_are_the_users_with_file_and_line(cli: Cli, tmp_path: Path) -> None:
    """A SyntaxError in the user's module read "unexpected SyntaxError", like our own bug."""
    (tmp_path / "broken_syntax.py").write_text("import json\nx = (\n")
    (tmp_path / "raises.py").write_text("import os\nraise RuntimeError('no config')\n")
    spec = ("validate", "t1", "{}", "--validator")
    broken = cli(*spec, "broken_syntax:validator")
    one_line_error(broken, "--validator broken_syntax:validator: syntax error at ")
    assert "broken_syntax.py:2: '(' was never closed" in broken.err, broken.err
    assert "unexpected" not in broken.err
    raising = cli(*spec, "raises:validator")
    one_line_error(raising, "importing 'raises' raised RuntimeError at ", "no config")
    assert "raises.py:2: " in raising.err and "unexpected" not in raising.err, raising.err


def test_a_deep_path_is_cut_in_the_error(cli: Cli) -> None:
    """The error for 1,000-deep JSON repeated [0] 250 times, a line of a kilobyte."""
    result = cli("append", "s.1", "t.x", DEEP, *MEMORY)
    one_line_error(result, "data[0][0][0][...", "more...][0][0]: ", "nested too deeply")
    assert len(result.err) < 300, result.err


def test_bench_appends_exactly_events_and_refuses_more_tasks_than_events(cli: Cli) -> None:
    """bench appended max(--events, --tasks), and whole multiples of --tasks only."""
    uneven = ok(cli("bench", "--events", "30", "--tasks", "7", *MEMORY))
    assert "append, 1 event per call, 7 tasks: 30 events" in uneven.out, uneven.out
    default = ok(cli("bench", "--events", "10", *MEMORY))  # 20 tasks by default: 10 here
    assert "append, 1 event per call, 10 tasks: 10 events" in default.out, default.out
    refused = cli("bench", "--events", "10", "--tasks", "100000", *MEMORY)
    assert refused.code == 2 and "Traceback" not in refused.err, refused.err
    assert "--tasks 100000 is more than --events 10" in refused.err
    assert refused.out == ""


def test_short_paths_cuts_only_long_paths() -> None:
    from pepperpy.event.cli._errors import short_paths

    assert short_paths("at data[0][1]['k']: bad") == "at data[0][1]['k']: bad"
    cut = short_paths("at data" + "[0]" * 250 + "['a]']['b']: too deep")
    assert cut == "at data[0][0][0][...247 more...]['a]']['b']: too deep"


def test_validate_names_a_malformed_type(cli: Cli, tmp_path: Path) -> None:
    """validate 'a..b' '{}' said no schema is registered for it, not what is wrong."""
    (tmp_path / "good.json").write_text(json.dumps({"type": "object"}))
    for event_type, says in [("a..b", "two dots"), ("", "TYPE is empty"), ("a.*", "wildcard")]:
        result = cli("validate", event_type, "{}", "--schema", "t1=good.json")
        one_line_error(result, "TYPE " if event_type else "", says)
        assert "no schema" not in result.err, result.err
