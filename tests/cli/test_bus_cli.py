"""``pepperpy-event bus publish`` and ``bus tail`` against real Redis and NATS.

Each test has a Redis namespace or a JetStream stream and subject prefix of its own,
deleted after it. ``bus tail`` runs in a subprocess; the test waits for its
``listening`` line on stderr before publishing, since a subscription sees only the
events published after it exists.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import click
import pytest

from pepperpy.event import Event, EventBus, RetryPolicy
from pepperpy.event.transports.nats import NatsTransport
from tests.conftest import unique_name
from tests.helpers import delete_redis_keys

from .conftest import Cli, Result, command_env
from .test_cli import one_line_error

BROKERS = [
    pytest.param("redis", marks=pytest.mark.redis),
    pytest.param("nats", marks=pytest.mark.nats),
]
#: seconds to wait for a line, an event or an exit
WAIT = 30


@pytest.fixture(params=BROKERS)
async def transport_url(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """A broker URL with a namespace (Redis) or stream and prefix (NATS) of this test's."""
    name = unique_name("pepcli")
    if request.param == "redis":
        base = request.getfixturevalue("redis_url")
        yield f"{base}?namespace={name}"
        await delete_redis_keys(base, f"{name}:*")
    else:
        base = request.getfixturevalue("nats_url")
        yield f"{base}?stream={name.upper()}&prefix={name}"
        await asyncio.wait_for(NatsTransport(base, stream=name.upper()).delete_stream(), WAIT)


async def command(*args: str, cwd: Path, env: dict[str, str] | None = None) -> Result:
    """Run ``python -m pepperpy.event ARGS`` to its end without blocking the loop (stdin
    is no terminal, even when pytest's is)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pepperpy.event",
        *args,
        cwd=cwd,
        env=command_env(env),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return Result(process.returncode, out.decode(), err.decode())


class Tail:
    """``bus tail ARGS`` in a subprocess, started once it says it is listening."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.listening = ""
        assert process.stderr is not None
        self.stderr = process.stderr

    @classmethod
    async def start(cls, *args: str, cwd: Path, stdout: int = asyncio.subprocess.PIPE) -> Tail:
        process = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "pepperpy.event", "bus", "tail", *args),
            cwd=cwd,
            env=command_env(),
            stdout=stdout,
            stderr=asyncio.subprocess.PIPE,
        )
        tail = cls(process)
        first = (await asyncio.wait_for(tail.stderr.readline(), WAIT)).decode()
        if not first.startswith("listening to "):
            rest = (await asyncio.wait_for(tail.stderr.read(), WAIT)).decode()
            await tail.stop()
            raise AssertionError(f"bus tail did not listen: {first + rest}")
        tail.listening = first
        return tail

    async def line(self) -> str:
        assert self.process.stdout is not None
        return (await asyncio.wait_for(self.process.stdout.readline(), WAIT)).decode().rstrip("\n")

    async def finish(self) -> tuple[int, str, str]:
        """Wait for the exit: (status, the rest of stdout, the rest of stderr)."""
        out, err = await asyncio.wait_for(self.process.communicate(), WAIT)
        assert self.process.returncode is not None
        return self.process.returncode, (out or b"").decode(), err.decode()

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()


async def publish(url: str, topic: str, data: object, key: str | None = None) -> Event:
    async with EventBus(transport=url) as bus:
        return await bus.publish(topic, data, key=key)


async def test_publish_reaches_a_consumer_with_key_and_headers(
    transport_url: str, tmp_path: Path
) -> None:
    received: asyncio.Queue[Event] = asyncio.Queue()
    (tmp_path / "big.json").write_text(json.dumps({"lines": list(range(500))}))
    async with EventBus(transport=transport_url) as bus:
        bus.subscribe("orders.#", received.put)
        await bus.start()
        headers = ("--header", "source=shell", "--header", "ticket=T-1=2")
        given = ("--key", "o-7", *headers, "--transport", transport_url)
        result = await command("bus", "publish", "orders.placed", '{"id": 7}', *given, cwd=tmp_path)
        assert result.code == 0, result.err
        words = result.out.split()
        assert words[0] == "published" and words[2:] == ["to", "orders.placed"], result.out
        event = await asyncio.wait_for(received.get(), WAIT)
        assert (event.id, event.type, event.data) == (words[1], "orders.placed", {"id": 7})
        assert event.metadata["partitionkey"] == "o-7"
        assert event.metadata["source"] == "shell" and event.metadata["ticket"] == "T-1=2"
        # the payload from a file, the transport from the environment
        env = {"PEPPERPY_EVENT_TRANSPORT": transport_url}
        from_file = await command(
            "bus", "publish", "orders.big", "@big.json", cwd=tmp_path, env=env
        )
        assert from_file.code == 0, from_file.err
        big = await asyncio.wait_for(received.get(), WAIT)
        assert big.id == from_file.out.split()[1] and big.data == {"lines": list(range(500))}
        assert "partitionkey" not in big.metadata


async def test_tail_prints_what_is_published_after_it_listens_and_stops_at_count(
    transport_url: str, tmp_path: Path
) -> None:
    await publish(transport_url, "orders.before", {"n": 0})
    tail = await Tail.start("orders.#", "--count", "2", "--transport", transport_url, cwd=tmp_path)
    try:
        first = await publish(transport_url, "orders.placed", {"n": 1}, key="k-1")
        await publish(transport_url, "payments.captured", {"n": 9})  # not matched
        second = await publish(transport_url, "orders.paid", {"n": 2, "note": "x" * 300})
        code, out, err = await tail.finish()
    finally:
        await tail.stop()
    assert code == 0, err
    assert "Traceback" not in err and err.strip() == "", err
    rows = {tuple(line.split(" ", 4)[1:]) for line in out.splitlines()}
    cut = '{"n":2,"note":"' + "x" * 182 + "..."  # 200 characters in all
    assert rows == {
        ("orders.placed", "k-1", first.id, '{"n":1}'),
        ("orders.paid", "-", second.id, cut),
    }, out
    for line in out.splitlines():
        assert line[:4].isdigit() and line.split(" ", 1)[0].endswith("Z"), line


async def test_tail_json_lines_are_cloudevents_and_sigterm_exits_0(
    transport_url: str, tmp_path: Path
) -> None:
    tail = await Tail.start("#", "--json", "--transport", transport_url, cwd=tmp_path)
    try:
        sent = {(await publish(transport_url, f"t.{n}", {"n": n}, key=f"k{n}")).id for n in (1, 2)}
        lines = [await tail.line(), await tail.line()]
        tail.process.send_signal(signal.SIGTERM)
        code, out, err = await tail.finish()
    finally:
        await tail.stop()
    assert code == 0, err
    assert out == "" and "Traceback" not in err and err.strip() == "", (out, err)
    events = [Event.from_json(line) for line in lines]
    assert {event.id for event in events} == sent
    assert {(event.type, event.data["n"], event.metadata["partitionkey"]) for event in events} == {
        ("t.1", 1, "k1"),
        ("t.2", 2, "k2"),
    }
    assert all(json.loads(line)["specversion"] == "1.0" for line in lines)


async def test_tail_shows_new_dead_letters(transport_url: str, tmp_path: Path) -> None:
    async def fails(event: Event) -> None:
        raise RuntimeError("no stock for " + event.data["sku"])

    tail = await Tail.start(
        "deadletter.#", "--json", "--count", "1", "--transport", transport_url, cwd=tmp_path
    )
    try:
        async with EventBus(transport=transport_url, retry_policy=RetryPolicy.NONE) as bus:
            bus.subscribe("orders.*", fails, group="warehouse")
            await bus.start()
            failed = await bus.publish("orders.placed", {"sku": "kettle"})
            code, out, err = await tail.finish()
    finally:
        await tail.stop()
    assert code == 0, err
    letter = Event.from_json(out)
    assert letter.type == "deadletter.orders.placed" and letter.data == {"sku": "kettle"}
    assert letter.metadata["dlid"] == failed.id
    assert "no stock for kettle" in letter.metadata["dlreason"]


async def test_tail_with_a_group_acknowledges_what_it_printed(
    transport_url: str, tmp_path: Path
) -> None:
    """A second member started after the first one exited gets the new event only."""
    seen: list[tuple[str, list[str]]] = []
    for n in (1, 2):
        tail = await Tail.start(
            "jobs.*", "--group", "ops", "--count", "1", "--transport", transport_url, cwd=tmp_path
        )
        try:
            sent = await publish(transport_url, "jobs.run", {"n": n})
            code, out, err = await tail.finish()
        finally:
            await tail.stop()
        assert code == 0 and err == "", err
        assert "as a member of group 'ops'" in tail.listening, tail.listening
        seen.append((sent.id, out.split()))
    for sent_id, fields in seen:
        assert fields[1:4] == ["jobs.run", "-", sent_id], fields


async def test_a_group_made_beforehand_keeps_dead_letters_for_a_later_tail(
    transport_url: str, tmp_path: Path
) -> None:
    """The recipe docs/cli.md gives for dead letters published while no tail runs."""
    watch = ("deadletter.#", "--group", "dead-letters", "--transport", transport_url)
    tail = await Tail.start(*watch, cwd=tmp_path)
    tail.process.send_signal(signal.SIGTERM)
    assert (await tail.finish())[0] == 0

    called = asyncio.Event()

    async def fails(event: Event) -> None:
        called.set()
        raise RuntimeError("refused")

    async with EventBus(transport=transport_url, retry_policy=RetryPolicy.NONE) as bus:
        bus.subscribe("orders.*", fails, group="billing")
        await bus.start()
        failed = await bus.publish("orders.placed", {"n": 1})
        # close() waits for the delivery under way, which publishes the dead letter
        await asyncio.wait_for(called.wait(), WAIT)
    later = await command("bus", "tail", *watch, "--count", "1", "--json", cwd=tmp_path)
    assert later.code == 0, later.err
    letter = Event.from_json(later.out)
    assert (letter.type, letter.metadata["dlid"]) == ("deadletter.orders.placed", failed.id)


async def test_a_group_tail_whose_stdout_is_gone_dead_letters_the_event(
    transport_url: str, tmp_path: Path
) -> None:
    """Not acknowledged as if printed: the event goes to deadletter.<topic>, and the tail
    exits as for a closed pipe (141)."""
    letters: asyncio.Queue[Event] = asyncio.Queue()
    read_end, write_end = os.pipe()
    try:
        tail = await Tail.start(
            "jobs.*", "--group", "ops", "--transport", transport_url, cwd=tmp_path, stdout=write_end
        )
    finally:
        os.close(write_end)
    os.close(read_end)  # the reader goes away before the event comes
    try:
        async with EventBus(transport=transport_url) as bus:
            bus.subscribe("deadletter.#", letters.put)
            await bus.start()
            sent = await bus.publish("jobs.run", {"n": 1})
            letter = await asyncio.wait_for(letters.get(), WAIT)
            code, _, err = await tail.finish()
    finally:
        await tail.stop()
    assert (letter.type, letter.metadata["dlid"]) == ("deadletter.jobs.run", sent.id)
    assert "stdout could not print the event" in letter.metadata["dlreason"]
    assert code == 141 and "Traceback" not in err, err


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (("publish", "a.b", '{"x": '), ("JSON data: invalid JSON",)),
        (("publish", "a.b", "@missing.json"), ("JSON @missing.json: cannot read",)),
        (("publish", "a.b", "@"), ("JSON '@' names no file: give @FILE, or @- to read stdin",)),
        (
            ("publish", "a.b", "{}", "--header", "novalue"),
            ("--header 'novalue' is not NAME=VALUE",),
        ),
        (("publish", "a.b", "{}", "--transport", ""), ("no transport: pass --transport URL",)),
        (("publish", "a.b", "{}"), ("no transport", "PEPPERPY_EVENT_TRANSPORT")),
        (("tail", "a.#"), ("no transport", "PEPPERPY_EVENT_TRANSPORT")),
        (("publish", "a.b", "{}", "--transport", "memory://"), ("memory://", "inside one process")),
        (("tail", "a.#", "--transport", "MEMORY://"), ("memory://", "inside one process")),
        (
            ("tail", "a.#", "--transport", "kafka://h:9092"),
            ("'kafka://h:9092' is not a broker URL",),
        ),
        (("publish", "a..b", "{}"), ("TOPIC 'a..b' is not a topic", "two dots")),
        (("publish", "a.*", "{}"), ("TOPIC 'a.*' is not a topic", "wildcard")),
        (("publish", "", "{}"), ("TOPIC is empty",)),
        (("tail", "a.#.", "--transport", "redis://h"), ("PATTERN 'a.#.' is not a topic pattern",)),
        (("tail", "a.#", "--group", "", "--transport", "redis://h"), ("--group: group must be",)),
        (
            ("publish", "a.b", "{}", "--transport", "redis://127.0.0.1:6379/0?namespce=x"),
            ("unknown parameter 'namespce'",),
        ),
        (("delete-group", "a.*", "g", "--yes"), ("no transport", "PEPPERPY_EVENT_TRANSPORT")),
        (
            ("delete-group", "a..*", "g", "--transport", "redis://h"),
            ("PATTERN 'a..*' is not a topic pattern",),
        ),
        (("delete-group", "a.*", "", "--transport", "redis://h"), ("GROUP: group must be",)),
        (
            ("delete-group", "a.*", "g", "--yes", "--transport", "memory://"),
            ("memory://", "inside one process"),
        ),
    ],
)
def test_bad_input_is_one_line(cli: Cli, args: tuple[str, ...], fragments: tuple[str, ...]) -> None:
    one_line_error(cli("bus", *args), *fragments)


def test_every_bus_command_takes_transport_from_option_or_environment(cli: Cli) -> None:
    from pepperpy.event.cli._app import app

    group = app.commands["bus"]
    assert isinstance(group, click.Group)
    assert set(group.commands) == {"publish", "tail", "delete-group"}
    for name, command_ in group.commands.items():
        options = [p for p in command_.params if p.name == "transport"]
        assert options and options[0].envvar == "PEPPERPY_EVENT_TRANSPORT", name
        assert "PEPPERPY_EVENT_TRANSPORT" in cli("bus", name, "--help").out
    assert "bus" in cli("--help").out


@pytest.mark.parametrize("command_name", ["publish", "tail", "delete-group"])
def test_a_password_in_the_transport_url_is_never_printed(cli: Cli, command_name: str) -> None:
    """An unreachable broker (nothing listens on port 1): the error shows the URL redacted."""
    url = "redis://ops:hunter2@127.0.0.1:1/0?connect_timeout=1"
    args = {"publish": ("a.b", "{}"), "tail": ("a.#",), "delete-group": ("a.*", "g", "--yes")}[
        command_name
    ]
    result = cli("bus", command_name, *args, "--transport", url)
    one_line_error(result, "redis://ops:***@127.0.0.1:1/0")
    assert "hunter2" not in result.err + result.out
