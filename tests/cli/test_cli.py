"""The pepperpy-event command, run for real in a subprocess.

Stores are filled in-process (fast) and then inspected through the command, so each
test starts only the processes whose behaviour it checks.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import signal
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pepperpy.event import NO_STREAM, Event, EventStore
from pepperpy.event._checkpoints import Checkpoint, CheckpointStore, open_checkpoint_store
from pepperpy.event.cli._app import app
from pepperpy.event.security import AuditLog

from ..conftest import fresh_postgres_database
from .conftest import Cli, Result, command_env, run_with_terminal_stderr, start_command


def ok(result: Result) -> Result:
    assert result.code == 0, result.err
    assert "Traceback" not in result.err
    return result


def one_line_error(result: Result, *fragments: str) -> None:
    assert result.code != 0, result.out
    assert "Traceback" not in result.err and "Traceback" not in result.out
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("pepperpy-event: error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def seed(url: str, events: list[tuple[str, Event]]) -> None:
    async def write() -> None:
        async with EventStore(url) as store:
            for stream, event in events:
                await store.append(stream, event)

    asyncio.run(write())


def test_demo_runs_end_to_end_and_twice(cli: Cli, tmp_path: Path) -> None:
    began = time.monotonic()
    first = ok(cli("demo"))
    assert time.monotonic() - began < 30
    assert (tmp_path / "events.db").exists()  # the default store
    assert "run 1" in first.out
    assert "payments: captured $81.00 for o1-1" in first.out
    assert "warehouse: shipped o1-1" in first.out
    assert "card declined for o1-2" in first.out
    assert "o1-4 waits for filter-papers" in first.out
    assert "revenue $123.00" in first.out
    second = ok(cli("demo"))
    assert "run 2" in second.out and "revenue $246.00" in second.out
    assert "13 replayed, 13 earlier events skipped" in second.out
    history = ok(cli("read", "shop.order.o2-1")).lines
    assert [line.split(" ", 2)[:2] for line in history] == [
        ["0", "order.placed"],
        ["1", "order.paid"],
        ["2", "order.shipped"],
    ]
    assert json.loads(history[1].split(" ", 2)[2]) == {
        "order_id": "o2-1",
        "customer": "alice",
        "amount": 8100,
    }


def test_append_then_read_in_every_format(cli: Cli, store_url: str) -> None:
    s = ("--store", store_url)
    appended = ok(cli("append", "user.1", "user.created", '{"name": "Ann"}', *s))
    assert appended.out.strip() == "appended user.1:0 user.created (global position 0)"
    ok(cli("append", "user.1", "user.renamed", '{"name": "Anna"}', *s, "--metadata", '{"by": "a"}'))
    assert ok(cli("read", "user.1", *s)).lines == [
        '0 user.created {"name":"Ann"}',
        '1 user.renamed {"name":"Anna"}',
    ]
    assert ok(cli("read", "user.1", *s, "--backwards", "--limit", "1")).lines == [
        '1 user.renamed {"name":"Anna"}'
    ]
    assert ok(cli("read", "user.1", *s, "--from", "1")).lines == ['1 user.renamed {"name":"Anna"}']
    whole = [json.loads(line) for line in ok(cli("read", "user.1", *s, "--json")).lines]
    assert whole[1]["metadata"] == {"by": "a"}
    assert whole[1]["stream"] == "user.1" and whole[1]["position"] == 1
    assert datetime.fromisoformat(whole[0]["timestamp"]).tzinfo is not None


def test_store_comes_from_the_environment(cli: Cli, store_url: str, tmp_path: Path) -> None:
    ok(cli("append", "a.b", "x.y", "1", env={"PEPPERPY_EVENT_STORE": store_url}))
    assert not (tmp_path / "events.db").exists()
    assert ok(cli("read", "a.b", "--store", store_url)).lines == ["0 x.y 1"]


def test_store_before_the_subcommand(cli: Cli, store_url: str, tmp_path: Path) -> None:
    other = f"sqlite:///{tmp_path}/other.db"
    ok(cli("--store", store_url, "append", "a.b", "x.y", "1"))
    assert ok(cli("--store", store_url, "read", "a.b")).lines == ["0 x.y 1"]
    # the group's --store beats the environment; the subcommand's own beats both
    env = {"PEPPERPY_EVENT_STORE": other}
    assert ok(cli("--store", store_url, "read", "a.b", env=env)).lines == ["0 x.y 1"]
    one_line_error(cli("--store", store_url, "read", "a.b", "--store", other), "no event store")


def test_expected_version(cli: Cli, store_url: str) -> None:
    seed(store_url, [("acct.1", Event("opened", {})), ("acct.1", Event("credited", {}))])
    s = ("--store", store_url)
    ok(cli("append", "acct.1", "credited", "{}", "--expected-version", "1", *s))
    one_line_error(
        cli("append", "acct.1", "debited", "{}", "--expected-version", "0", *s),
        "expected version 0",
        "actual version 2",
    )
    ok(cli("append", "acct.2", "opened", "{}", "--expected-version", "no-stream", *s))
    assert len(ok(cli("read", "acct.1", *s)).lines) == 3


def test_streams_and_stats(cli: Cli, store_url: str) -> None:
    seed(
        store_url,
        [
            ("user.1", Event("user.created", {})),
            ("user.1", Event("user.renamed", {})),
            ("user.2", Event("user.created", {})),
            ("order.1", Event("order.placed", {})),
        ],
    )
    s = ("--store", store_url)
    assert ok(cli("streams", *s)).lines == ["order.1 1", "user.1 2", "user.2 1"]
    assert ok(cli("streams", "user.*", *s)).lines == ["user.1 2", "user.2 1"]
    stats = ok(cli("stats", *s)).lines
    assert stats[:3] == [f"store: {store_url}", "streams: 3", "events: 4"]
    assert [line.split() for line in stats[4:]] == [
        ["user.created", "2"],
        ["order.placed", "1"],
        ["user.renamed", "1"],
    ]
    assert "events: 3" in ok(cli("stats", "--streams", "user.*", *s)).lines


def test_counts_are_visible_events_and_stats_narrow_streams(cli: Cli, store_url: str) -> None:
    async def write() -> None:
        async with EventStore(store_url) as store:
            await store.append("d.1", [Event("old", {"i": i}) for i in range(3)])
            await store.delete_stream("d.1")
            await store.append("d.1", Event("new", {}), expected_version=NO_STREAM)
            await store.append("other.1", Event("new", {}))

    asyncio.run(write())
    s = ("--store", store_url)
    assert ok(cli("streams", *s)).lines == ["d.1 1", "other.1 1"]  # as many as read shows
    assert len(ok(cli("read", "d.1", *s)).lines) == 1
    assert ok(cli("stats", "--streams", "d.#", *s)).lines[1:3] == ["streams: 1", "events: 1"]
    both = ok(cli("stats", "--streams", "d.#", "--streams", "other.*", *s)).lines
    assert both[1:3] == ["streams: 2", "events: 2"]


def test_stats_of_the_whole_log_counts_without_decoding(cli: Cli, store_url: str) -> None:
    # the store counts by type from its index (count_by_minute): an event whose data
    # no longer decodes is still counted; reading the events, as --streams does, fails
    seed(store_url, [("a.1", Event("a.made", {})), ("a.1", Event("a.made", {}))])
    with closing(sqlite3.connect(store_url.removeprefix("sqlite:///"))) as raw, raw:
        raw.execute("UPDATE events SET data = X'FF00' WHERE global_position = 1")
    s = ("--store", store_url)
    stats = ok(cli("stats", *s)).lines
    assert stats[1:3] == ["streams: 1", "events: 2"]
    assert [line.split() for line in stats[4:]] == [["a.made", "2"]]
    assert cli("stats", "--streams", "a.*", *s).code != 0


def test_tail_prints_the_last_events(cli: Cli, store_url: str) -> None:
    seed(store_url, [(f"item.{n}", Event("item.added", {"n": n})) for n in range(5)])
    s = ("--store", store_url)
    assert ok(cli("tail", "-n", "2", *s)).lines == [
        '3 item.3:0 item.added {"n":3}',
        '4 item.4:0 item.added {"n":4}',
    ]
    assert ok(cli("tail", "--streams", "item.1", *s)).lines == ['1 item.1:0 item.added {"n":1}']


def test_tail_follow_prints_live_appends(cli: Cli, store_url: str, tmp_path: Path) -> None:
    seed(store_url, [("feed.1", Event("feed.old", {}))])
    s = ("--store", store_url)
    follower = start_command("tail", "-f", "--count", "2", "-n", "1", *s, cwd=tmp_path)
    try:
        assert follower.stdout is not None
        first = follower.stdout.readline()  # the history is printed before following starts
        assert first.split()[:3] == ["0", "feed.1:0", "feed.old"]
        seed(
            store_url,
            [("feed.1", Event("feed.new", {"n": 1})), ("feed.2", Event("feed.new", {"n": 2}))],
        )
        out, err = follower.communicate(timeout=30)
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.communicate()
    assert follower.returncode == 0, err
    assert out.splitlines() == [
        '1 feed.1:1 feed.new {"n":1}',
        '2 feed.2:0 feed.new {"n":2}',
    ]


def test_replay_time_window_stream_and_checkpoint(cli: Cli, store_url: str) -> None:
    base = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    seed(
        store_url,
        [
            (
                f"sensor.{h % 2}",
                Event("sensor.reading", {"hour": h}, timestamp=base + timedelta(hours=h)),
            )
            for h in range(4)
        ],
    )
    s = ("--store", store_url)

    def hours(result: Result) -> list[int]:
        return [json.loads(line.split(" ", 3)[3])["hour"] for line in result.lines]

    window = ok(cli("replay", "--from", "2024-05-01T13:00:00Z", "--to", "2024-05-01T15:00:00Z", *s))
    assert hours(window) == [1, 2]
    assert "replayed 2, skipped 2, failed 0" in window.err
    assert hours(ok(cli("replay", "--start-time", "2024-05-01T16:00:00+02:00", *s))) == [2, 3]
    one = ok(cli("replay", "--stream", "sensor.1", *s))
    assert [line.split(" ")[1] for line in one.lines] == ["sensor.1:0", "sensor.1:1"]

    first = ok(cli("replay", "--checkpoint", "audit", "-q", *s))
    assert first.lines == [] and "replayed 4" in first.err
    seed(store_url, [("sensor.9", Event("sensor.reading", {"hour": 9}))])
    later = ok(cli("replay", "--checkpoint", "audit", *s))
    assert hours(later) == [9] and "replayed 1" in later.err


def test_replay_speed_paces_events(cli: Cli, store_url: str) -> None:
    base = datetime(2024, 1, 1, tzinfo=UTC)
    seed(
        store_url,
        [
            ("tick.1", Event("tick", {"i": i}, timestamp=base + timedelta(seconds=i * 0.4)))
            for i in range(3)
        ],
    )
    fast = ok(cli("replay", "--store", store_url))
    began = time.monotonic()
    paced = ok(cli("replay", "--speed", "2", "--store", store_url))
    assert time.monotonic() - began >= 0.4  # 0.8 s of history at twice the speed
    assert paced.lines == fast.lines and len(paced.lines) == 3


BAD_INPUT: list[tuple[tuple[str, ...], tuple[str, ...]]] = [
    (("append", "user.1", "user.created", '{"name": '), ("JSON data", "invalid JSON")),
    (("append", "user.1", "t", "{}", "--metadata", "[1]"), ("--metadata",)),
    # orjson reads integers beyond 64 bits as floats: refused, not stored as 1e+23
    (("append", "u.1", "t", '{"n": 99999999999999999999999}'), ("JSON data", "64 bits")),
    (("append", "u.1", "t", "{}", "--metadata", '{"n": -9223372036854775809}'), ("64 bits",)),
    (("append", "user.1", "t", "{}", "--metadata", "{"), ("--metadata",)),
    (("append", "user.1", "t", "{}", "--expected-version", "soon"), ("--expected-version",)),
    (("append", "u.1", "t", "{}", "--expected-version", "\u00b2"), ("--expected-version", "0 to")),
    (("append", "u.1", "t", "{}", "--expected-version", "9" * 20), ("--expected-version", "0 to")),
    (("append", "user.1", "t", "{}", "--expected-version", "5"), ("expected version 5",)),
    (("append", "user.1", "t", "{}", "--expected-version", "no-stream"), ("actual version 0",)),
    (("append", "a..b", "t", "{}"), ("STREAM 'a..b' is not a stream name", "two dots")),
    (("append", "user.1", "t", "{}", "--store", "foo://bar"), ("unknown store URL",)),
    (("append", "user.1", "t", "{}", "--store", "events.db"), ("not a store URL",)),
    (("append", "u.1", "t", "{}", "--store", "sqlite:///no/such/dir/e.db"), ("does not exist",)),
    (("read", "user.1", "--store", "sqlite:///missing.db"), ("no event store",)),
    (("read", "nobody.home"), ("does not exist",)),
    (("replay", "--stream", "nobody.home"), ("does not exist",)),
    (("replay", "--from", "2024-01-01T00:00:00"), ("naive",)),
    (("replay", "--from", "last tuesday"), ("ISO-8601",)),
    (("replay", "--from", "2024-02-01T00:00:00Z", "--to", "2024-01-01T00:00:00Z"), ("after",)),
    (("replay", "--speed", "0"), ("speed",)),
    (("replay", "--stream", "user.1", "--streams", "user.*"), ("cannot be combined",)),
    (("replay", "--types", "us*r"), ("--types 'us*r' is not a topic pattern",)),
    (("tail", "--store", "postgresql://postgres@127.0.0.1:1/nope"), ("PostgreSQL",)),
    # the user's mistakes, named as such (they were "unexpected TypeError/OverflowError")
    (("append", "s.1", "", "{}"), ("TYPE is empty",)),
    (
        ("stats", "--store", "postgresql://postgres@127.0.0.1:99999/x"),
        ("port 99999 is out of range (1 to 65535)",),
    ),
    (
        ("stats", "--store", "postgresql://postgres@127.0.0.1:http/x"),
        ("port 'http' is not a number",),
    ),
]


def test_bad_input_gives_one_line_and_non_zero_exit(cli: Cli, tmp_path: Path) -> None:
    seed(f"sqlite:///{tmp_path}/events.db", [("user.1", Event("user.created", {}))])
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda case: cli(*case[0]), BAD_INPUT))
    for (args, fragments), result in zip(BAD_INPUT, results, strict=True):
        try:
            one_line_error(result, *fragments)
            assert "error: unexpected " not in result.err, result.err
        except AssertionError as exc:
            raise AssertionError(f"pepperpy-event {' '.join(args)}: {exc}") from None
    # nothing was written by the refused appends
    assert ok(cli("read", "user.1")).lines == ["0 user.created {}"]


def test_integers_at_the_64_bit_limits_are_stored_exactly(cli: Cli, store_url: str) -> None:
    data = '{"max":18446744073709551615,"min":-9223372036854775808,"id":"123456789012345678901"}'
    ok(cli("append", "acct.1", "acct.credited", data, "--store", store_url))
    assert ok(cli("read", "acct.1", "--store", store_url)).lines == [f"0 acct.credited {data}"]


def test_usage_errors_exit_2_without_traceback(cli: Cli, store_url: str) -> None:
    missing = cli("append", "user.1")
    assert missing.code == 2 and "Traceback" not in missing.err
    assert "Missing argument" in missing.err
    unknown = cli("frobnicate")
    assert unknown.code == 2 and "Traceback" not in unknown.err
    seed(store_url, [("u.1", Event("t", {}))])
    for args in (("tail", "-n", "9" * 20), ("read", "u.1", "--from", "9" * 20)):
        huge = cli(*args, "--store", store_url)
        assert huge.code == 2 and "Traceback" not in huge.err, args
        assert "is not in the range 0<=x<=9223372036854775807" in huge.err, huge.err
    # --max-gap caps the pauses of --speed: alone it would be silently ignored
    gap = cli("replay", "--max-gap", "1", "--store", store_url)
    assert gap.code == 2 and "--max-gap" in gap.err and "--speed" in gap.err, gap.err
    assert gap.out == ""
    assert ok(cli("replay", "--max-gap", "1", "--speed", "1000", "--store", store_url)).lines


def test_store_url_schemes_match_in_any_case(cli: Cli, tmp_path: Path) -> None:
    ok(cli("append", "s.1", "t.x", "{}", "--store", f"SQLITE:///{tmp_path}/upper.db"))
    assert ok(cli("read", "s.1", "--store", f"sqlite:///{tmp_path}/upper.db")).lines == ["0 t.x {}"]
    for url in ("MEMORY://", "Memory://"):
        assert ok(cli("stats", "--store", url)).lines[:3] == [
            "store: memory://",
            "streams: 0",
            "events: 0",
        ]
    env = {"PEPPERPY_EVENT_STORE": f"SQLite:///{tmp_path}/upper.db"}
    assert ok(cli("read", "s.1", env=env)).lines == ["0 t.x {}"]


def test_every_subcommand_takes_store(cli: Cli) -> None:
    names = {"demo", "append", "read", "tail", "streams", "replay", "stats"}
    assert names <= set(app.commands)
    for name, command in app.commands.items():
        if name in ("audit", "bus"):  # an audit log file, a broker: not the event store
            continue
        if name == "copy":  # two stores, both given as arguments (SOURCE_URL DESTINATION_URL)
            continue
        options: list[Any] = [p for p in command.params if p.name == "store"]
        assert options and options[0].envvar == "PEPPERPY_EVENT_STORE", name
    top = ok(cli("--help")).out
    assert all(name in top for name in names)
    assert "--store" in ok(cli("replay", "--help")).out


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "pepperpy-event"
    if not script.exists():
        pytest.skip("the package is not installed with its console script")
    done = subprocess.run(
        [str(script), "--help"], capture_output=True, text=True, timeout=60, env=command_env()
    )
    assert done.returncode == 0 and "replay" in done.stdout


@pytest.mark.postgres
def test_commands_on_postgres(cli: Cli, postgres_url: str) -> None:
    s = ("--store", postgres_url)
    ok(cli("append", "user.7", "user.created", '{"id": 7}', *s))
    assert ok(cli("read", "user.7", *s)).lines == ['0 user.created {"id":7}']
    demo = ok(cli("demo", *s))
    assert "revenue $123.00" in demo.out
    stats = ok(cli("stats", *s)).lines
    assert "events: 15" in stats  # 1 + the demo's run marker + its 13 events
    replay = ok(cli("replay", "--checkpoint", "pg", "-q", *s))
    assert "replayed 15" in replay.err


def test_ctrl_c_stops_tail_follow_quietly(store_url: str, tmp_path: Path) -> None:
    seed(store_url, [("feed.1", Event("feed.old", {}))])
    follower = start_command("tail", "-f", "--store", store_url, cwd=tmp_path)
    try:
        assert follower.stdout is not None
        assert "feed.old" in follower.stdout.readline()
        follower.send_signal(signal.SIGINT)
        _, err = follower.communicate(timeout=20)
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.communicate()
    assert follower.returncode == 0 and "Traceback" not in err and "Aborted" not in err


def test_bench_refuses_a_store_that_holds_events_without_force(cli: Cli, store_url: str) -> None:
    """bench wrote its events into whatever store it was pointed at, the default one
    included: live followers received them and their soft-deleted rows stayed."""
    seed(store_url, [("user.1", Event("user.created", {}))])
    refused = cli("bench", "--events", "20", "--tasks", "2", "--store", store_url)
    one_line_error(refused, "already holds events", "--force")
    # nothing written, not even soft-deleted: the next event gets the next position
    appended = ok(cli("append", "user.2", "user.created", "{}", "--store", store_url))
    assert appended.out.strip().endswith("(global position 1)"), appended.out


def test_bench_measures_and_cleans_up(cli: Cli, store_url: str) -> None:
    seed(store_url, [("user.1", Event("user.created", {}))])
    result = ok(
        cli(
            "bench",
            "--events",
            "200",
            "--tasks",
            "4",
            "--batch",
            "50",
            "--force",
            "--store",
            store_url,
        )
    )
    lines = result.lines
    assert lines[0] == f"store: {store_url}"
    labels = [line.split(":")[0] for line in lines[1:]]
    assert labels == [
        "append, 1 event per call, 4 tasks",
        "append, 50-event batches",
        "read one stream (async for)",
        "replay one stream (EventReplay)",
    ]
    assert all(line.endswith("events/s") and " 200 events in " in line for line in lines[1:])
    assert ok(cli("streams", "--store", store_url)).lines == ["user.1 1"]


USER_SCHEMA = {
    "type": "object",
    "properties": {"user_id": {"type": "string"}, "name": {"type": "string"}},
    "required": ["user_id", "name"],
}


def test_validate_payloads_and_stored_events(cli: Cli, store_url: str, tmp_path: Path) -> None:
    (tmp_path / "user.json").write_text(json.dumps(USER_SCHEMA))
    schema = ("--schema", "user.created=user.json")
    good = ok(cli("validate", "user.created", '{"user_id": "1", "name": "Ann"}', *schema))
    assert good.lines == ["valid user.created (version 1)"]
    one_line_error(
        cli("validate", "user.created", '{"user_id": 1}', *schema),
        "2 problems",
        "user_id",
        "name",
    )
    seed(
        store_url,
        [
            ("user.1", Event("user.created", {"user_id": "1", "name": "Ann"})),
            ("user.2", Event("user.created", {"user_id": 2, "name": "Bob"})),
            ("order.1", Event("order.placed", {})),
        ],
    )
    stored = cli("validate", *schema, "--store", store_url)
    assert stored.code == 1 and "Traceback" not in stored.err
    assert len(stored.lines) == 1 and stored.lines[0].startswith("1 user.2:0 user.created: user_id")
    assert "checked 2, invalid 1, without a schema 1" in stored.err
    assert stored.err.strip().endswith("1 of 2 checked events are invalid")
    only_first = ok(cli("validate", *schema, "--store", store_url, "--streams", "user.1"))
    assert "checked 1, invalid 0" in only_first.err


def test_validate_with_a_validator_from_user_code(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "shop_schemas.py").write_text(
        "from pepperpy.event import EventValidator\n"
        "validator = EventValidator()\n"
        "@validator.schema('order.placed')\n"
        "class OrderPlaced:\n"
        "    order_id: str\n"
        "    amount: int\n"
    )
    spec = ("--validator", "shop_schemas:validator")
    assert ok(cli("validate", "order.placed", '{"order_id": "o1", "amount": 5}', *spec)).lines
    one_line_error(cli("validate", "order.placed", '{"order_id": "o1"}', *spec), "amount")


def test_validate_bad_input(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "list.json").write_text("[1]")
    (tmp_path / "shop_schemas.py").write_text("validator = 42\n")
    cases = [
        (("validate", "x", "{}"), "give schemas"),
        (("validate", "x"), "give both TYPE and JSON"),
        (("validate", "x", "{}", "--schema", "x"), "TYPE=FILE.json"),
        (("validate", "x", "{}", "--schema", "x=missing.json"), "cannot read missing.json"),
        (("validate", "x", "{}", "--schema", "x=list.json"), "must be an object"),
        (("validate", "x", "{}", "--schema", "x@two=list.json"), "version"),
        (("validate", "x", "{}", "--validator", "nowhere:validator"), "cannot import"),
        (("validate", "x", "{}", "--validator", "shop_schemas:validator"), "found int"),
        (("validate", "x", "{}", "--validator", "shop_schemas"), "module:attribute"),
    ]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda case: cli(*case[0]), cases))
    for (args, fragment), result in zip(cases, results, strict=True):
        try:
            one_line_error(result, fragment)
        except AssertionError as exc:
            raise AssertionError(f"pepperpy-event {' '.join(args)}: {exc}") from None


def test_progress_bar_on_a_terminal(store_url: str, tmp_path: Path) -> None:
    """With stderr on a terminal, replay and stats draw rich progress bars and still work."""
    seed(store_url, [(f"item.{n % 7}", Event("item.added", {"n": n})) for n in range(600)])
    quiet = run_with_terminal_stderr("replay", "--quiet", "--store", store_url, cwd=tmp_path)
    assert quiet.code == 0 and "Traceback" not in quiet.terminal, quiet.terminal
    assert "replaying" in quiet.terminal  # the bar was drawn
    assert "replayed 600, skipped 0, failed 0" in quiet.terminal
    stats = run_with_terminal_stderr("stats", "--store", store_url, cwd=tmp_path)
    assert stats.code == 0, stats.terminal
    assert "events: 600" in stats.out


def test_events_go_to_stdout_while_a_progress_bar_shows(store_url: str, tmp_path: Path) -> None:
    """rich redirects sys.stdout into its console while a bar is live: events must not follow.

    They went to the terminal instead of the file, and a checkpoint moved past them.
    """
    seed(store_url, [(f"item.{n % 7}", Event("item.added", {"n": n})) for n in range(600)])
    for extra in ((), ("--checkpoint", "c1")):
        done = run_with_terminal_stderr("replay", *extra, "--store", store_url, cwd=tmp_path)
        assert done.code == 0, done.terminal
        lines = done.out.splitlines()
        assert [int(line.split()[0]) for line in lines] == list(range(600))
        assert "item.added" not in done.terminal
        assert "replaying" in done.terminal  # the bar was drawn, on stderr
    again = run_with_terminal_stderr(
        "replay", "--checkpoint", "c1", "--store", store_url, cwd=tmp_path
    )
    assert again.out == "" and "replayed 0" in again.terminal  # the first run printed them all


def test_a_failed_import_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A half-upgraded install used to end in a chained UnboundLocalError traceback."""
    from pepperpy.event.cli import main

    monkeypatch.delenv("PEPPERPY_EVENT_DEBUG", raising=False)
    monkeypatch.setitem(sys.modules, "pepperpy.event.cli._app", None)  # its import fails
    with pytest.raises(SystemExit) as stopped:
        main(["stats"])
    assert stopped.value.code == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("pepperpy-event: error: "), err
    assert "pepperpy.event.cli._app" in err and "PEPPERPY_EVENT_DEBUG=1" in err
    monkeypatch.setenv("PEPPERPY_EVENT_DEBUG", "1")  # the traceback, on request
    with pytest.raises(ImportError):
        main(["stats"])


def test_a_missing_extra_names_its_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from pepperpy.event import cli

    click = sys.modules["click"]
    monkeypatch.delenv("PEPPERPY_EVENT_DEBUG", raising=False)
    monkeypatch.setitem(sys.modules, "click", None)  # as if the cli extra were missing
    with pytest.raises(SystemExit) as stopped:
        cli.main(["stats"])
    assert stopped.value.code == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "pip install 'pepperpy-event[cli]'" in err, err

    def fails(args: list[str]) -> None:  # a driver imported deep inside a command
        raise ModuleNotFoundError("No module named 'asyncpg'", name="asyncpg")

    monkeypatch.setitem(sys.modules, "click", click)
    monkeypatch.setattr(cli, "_run", fails)
    with pytest.raises(SystemExit):
        cli.main(["stats"])
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "pip install 'pepperpy-event[postgres]'" in err, err


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_reading_commands_leave_a_file_that_is_not_a_store_alone(cli: Cli, tmp_path: Path) -> None:
    """stats, read, ... used to write the store's tables into any SQLite file they were given."""
    audit = tmp_path / "audit.db"
    log = AuditLog(str(audit))
    log.record("append", "orders.1", principal="svc")
    log.close()
    empty = tmp_path / "empty.db"
    empty.touch()
    text = tmp_path / "notes.db"
    text.write_text("not a database at all, but long enough to hold an SQLite header " * 3)
    (tmp_path / "schema.json").write_text('{"type": "object"}')
    commands = [
        ("stats",),
        ("read", "some.stream"),
        ("streams",),
        ("tail",),
        ("tail", "-f", "--count", "1"),
        ("replay",),
        ("replay", "--checkpoint", "c"),  # its checkpoint table is not made either
        ("validate", "--schema", f"t.x={tmp_path / 'schema.json'}"),
    ]
    cases = [(path, why) for path, why in ((audit, "tables"), (empty, "empty"), (text, "SQLite"))]
    before = {path: (sha256(path), sorted(p.name for p in tmp_path.iterdir())) for path, _ in cases}
    runs = [(path, why, args) for path, why in cases for args in commands]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda run: cli(*run[2], "--store", f"sqlite:///{run[0]}"), runs))
    for (path, why, args), result in zip(runs, results, strict=True):
        try:
            one_line_error(result, "is not an event store", why, "left as it is")
        except AssertionError as exc:
            raise AssertionError(f"{' '.join(args)} on {path.name}: {exc}") from None
    for path, _ in cases:
        assert sha256(path) == before[path][0], path.name
    with closing(sqlite3.connect(audit)) as raw:
        tables = raw.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
        ).fetchall()
    assert tables == [("audit_log",), ("audit_meta",)]
    assert empty.stat().st_size == 0
    serve = cli("serve", "--port", "0", "--store", f"sqlite:///{audit}")
    one_line_error(serve, "is not an event store")
    assert sha256(audit) == before[audit][0]


async def test_an_sqlite_backend_that_may_not_create_opens_only_a_store(tmp_path: Path) -> None:
    """SQLiteBackend(create=False), what the reading commands use, on its own."""
    from pepperpy.event import StoreError
    from pepperpy.event.store.sqlite import SQLiteBackend

    missing, empty = tmp_path / "missing.db", tmp_path / "empty.db"
    empty.touch()
    for path, why in ((missing, "no event store at"), (empty, "an empty file")):
        async with EventStore(SQLiteBackend(str(path), create=False)) as store:
            with pytest.raises(StoreError, match=why):
                await store.streams()
            with pytest.raises(StoreError, match=why):  # every use, not only the first
                await store.append("s.1", Event("t.x", {}))
    assert not missing.exists() and empty.stat().st_size == 0
    async with EventStore(f"sqlite:///{tmp_path}/events.db") as made:
        await made.append("s.1", Event("t.x", {}))
    async with EventStore(SQLiteBackend(f"{tmp_path}/events.db", create=False)) as store:
        assert await store.streams() == ["s.1"]
        await store.append("s.1", Event("t.y", {}))  # a store it is: it may be written
        assert len(await store.get_stream("s.1")) == 2


def test_reading_commands_accept_a_new_store_still_in_its_write_ahead_log(
    cli: Cli, store_url: str
) -> None:
    """A store another process has just made has its tables in the WAL only, not the file."""

    async def while_open() -> Result:
        async with EventStore(store_url) as store:
            await store.append("s.1", Event("t.x", {}))
            return await asyncio.to_thread(cli, "stats", "--store", store_url)

    assert ok(asyncio.run(while_open())).lines[1:3] == ["streams: 1", "events: 1"]


class _SavesTogether(CheckpointStore):
    """A projection's state store whose saves wait until every demo is ready to save."""

    def __init__(self, inner: CheckpointStore, barrier: asyncio.Barrier) -> None:
        self.inner, self.barrier = inner, barrier

    async def load(self, name: str) -> Checkpoint | None:
        return await self.inner.load(name)

    async def save(
        self, name: str, position: int, state: Any = None, *, previous: int | None
    ) -> None:
        await self.barrier.wait()
        await self.inner.save(name, position, state, previous=previous)

    async def delete(self, name: str) -> bool:
        return await self.inner.delete(name)

    async def names(self) -> list[str]:
        return await self.inner.names()

    async def close(self) -> None:
        await self.inner.close()


async def _demos_at_once(url: str, count: int) -> list[str]:
    """``count`` demos on one store, on one event loop; what each printed.

    They wait for each other before claiming a run number and before saving their
    projection's state, so those steps overlap every time (across processes they
    overlapped now and then: 10 rounds of 4 demos failed a few times).
    """
    from pepperpy.event import _projection
    from pepperpy.event.cli import _demo

    claim = _demo.claim_run
    claiming, saving = asyncio.Barrier(count), asyncio.Barrier(count)

    async def claim_together(store: EventStore) -> int:
        await claiming.wait()
        return await claim(store)

    outputs: list[list[str]] = [[] for _ in range(count)]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_demo, "claim_run", claim_together)
        patch.setattr(
            _projection,
            "open_checkpoint_store",
            lambda url: _SavesTogether(open_checkpoint_store(url), saving),
        )
        await asyncio.gather(*(_demo.run_demo(url, outputs[n].append) for n in range(count)))
    return ["\n".join(lines) for lines in outputs]


def check_demos_at_once(url: str) -> None:
    outputs = asyncio.run(_demos_at_once(url, 4))
    runs = sorted(int(output.split(",")[1].split()[1]) for output in outputs)
    assert runs == [1, 2, 3, 4]
    for output in outputs:
        assert "projection 'shop.sales' rebuilt" in output
    again = asyncio.run(_demos_at_once(url, 1))[0]  # and it is safe to run again
    assert "run 5," in again and "revenue $615.00" in again  # 5 runs x $123.00


def test_demos_at_once_on_one_sqlite_store(tmp_path: Path) -> None:
    """They collided on the projection's saved checkpoint (ConcurrencyError)."""
    check_demos_at_once(f"sqlite:///{tmp_path}/events.db")


@pytest.mark.postgres
def test_demos_at_once_on_one_postgres_store(postgres_server: str) -> None:
    with fresh_postgres_database(postgres_server) as url:
        check_demos_at_once(url)


@pytest.mark.postgres
def test_store_passwords_are_never_printed(cli: Cli, postgres_server: str, tmp_path: Path) -> None:
    with fresh_postgres_database(postgres_server) as plain:
        secret = plain.replace("postgresql://postgres@", "postgresql://postgres:s3cret@")
        assert secret != plain  # the server trusts loopback: the password is not checked
        s = ("--store", secret)
        printed: list[Result] = [
            ok(cli("append", "a.1", "t.x", "{}", *s)),
            ok(cli("stats", *s)),
            ok(cli("demo", *s)),
            ok(cli("bench", "--events", "20", "--tasks", "2", "--batch", "10", "--force", *s)),
            cli("read", "nope.x", *s),
            cli("replay", "--stream", "nope.x", *s),
            cli("stats", "--store", secret.replace(":5432/", ":1/")),
            cli("stats", "--store", secret.replace(":5432/", ":99999/")),
            cli("stats", "--store", secret.replace("postgresql://", "POSTGRES://")),
            cli("stats", "--store", secret.replace("postgresql://", "redis://")),
            cli("stats", "--store", plain + "?password=s3cret&port=1"),
        ]
        assert printed[1].lines[0] == "store: " + secret.replace(":s3cret@", ":***@")
        for result in printed:
            assert "s3cret" not in result.out + result.err, result
        for result in printed[1:]:  # all but append print the URL (or quote it in an error)
            assert "***" in result.out + result.err, result
        serving = start_command("serve", "--port", "0", *s, cwd=tmp_path)
        try:
            assert serving.stdout is not None
            banner = serving.stdout.readline()
            serving.send_signal(signal.SIGINT)
            serving.communicate(timeout=20)
        finally:
            if serving.poll() is None:
                serving.kill()
                serving.communicate()
        assert "(store postgresql://postgres:***@" in banner and "s3cret" not in banner
