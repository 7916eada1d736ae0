"""The pepperpy-event command, run for real in a subprocess.

Stores are filled in-process (fast) and then inspected through the command, so each
test starts only the processes whose behaviour it checks.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pepperpy.event import NO_STREAM, Event, EventStore
from pepperpy.event.cli._app import app

from .conftest import Cli, Result, command_env, start_command


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
    (("append", "a..b", "t", "{}"), ("invalid pattern",)),
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
    (("replay", "--types", "us*r"), ("invalid pattern",)),
    (("tail", "--store", "postgresql://postgres@127.0.0.1:1/nope"), ("PostgreSQL",)),
]


def test_bad_input_gives_one_line_and_non_zero_exit(cli: Cli, tmp_path: Path) -> None:
    seed(f"sqlite:///{tmp_path}/events.db", [("user.1", Event("user.created", {}))])
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda case: cli(*case[0]), BAD_INPUT))
    for (args, fragments), result in zip(BAD_INPUT, results, strict=True):
        try:
            one_line_error(result, *fragments)
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


def test_every_subcommand_takes_store(cli: Cli) -> None:
    names = {"demo", "append", "read", "tail", "streams", "replay", "stats"}
    assert names <= set(app.commands)
    for name, command in app.commands.items():
        if name == "audit":  # works on an audit log file, not on the event store
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


def test_bench_measures_and_cleans_up(cli: Cli, store_url: str) -> None:
    seed(store_url, [("user.1", Event("user.created", {}))])
    result = ok(
        cli("bench", "--events", "200", "--tasks", "4", "--batch", "50", "--store", store_url)
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
    import os
    import pty

    seed(store_url, [(f"item.{n % 7}", Event("item.added", {"n": n})) for n in range(600)])
    for args in (("replay", "--quiet"), ("stats",)):
        leader, follower = pty.openpty()
        try:
            done = subprocess.run(
                [sys.executable, "-m", "pepperpy.event", *args, "--store", store_url],
                cwd=tmp_path,
                env=command_env({"TERM": "xterm", "COLUMNS": "100"}),
                stdout=subprocess.PIPE,
                stderr=follower,
                text=True,
                timeout=60,
            )
            os.close(follower)
            follower = -1
            chunks = []
            while True:
                try:
                    chunk = os.read(leader, 65536)
                except OSError:  # EIO: the terminal's other side is closed
                    break
                if not chunk:
                    break
                chunks.append(chunk)
        finally:
            if follower != -1:
                os.close(follower)
            os.close(leader)
        terminal = b"".join(chunks).decode(errors="replace")
        assert done.returncode == 0, terminal
        assert "Traceback" not in terminal
        if args[0] == "replay":
            assert "replaying" in terminal  # the bar was drawn
            assert "replayed 600, skipped 0, failed 0" in terminal
        else:
            assert "events: 600" in done.stdout
