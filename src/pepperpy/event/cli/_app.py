"""The ``pepperpy-event`` subcommands (typer), each a thin shell over the async API.

Every subcommand takes ``--store URL`` (or ``PEPPERPY_EVENT_STORE``; default an SQLite
file ``events.db`` in the working directory). Events go to stdout, one per line;
summaries, progress bars and errors go to stderr, so pipes see only events.
"""

from __future__ import annotations

import asyncio
import sys
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .. import _json
from .._checkpoints import sqlite_path
from .._event import Event
from .._replay import EventReplay, ReplayProgress, ReplayReport
from ..store import ANY, NO_STREAM, STREAM_EXISTS, EventStore
from ..store.base import ExpectedVersion
from ._output import event_json, global_line, stream_line

__all__ = ["DEFAULT_STORE", "CommandError", "app"]

DEFAULT_STORE = "sqlite:///events.db"
T = TypeVar("T")


class CommandError(Exception):
    """Bad input noticed by the command itself; printed as one line, exit status 1."""


app = typer.Typer(
    name="pepperpy-event",
    help="Inspect and drive a pepperpy-event store: demo, append, read, tail, replay, stats.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)

StoreOption = Annotated[
    str,
    typer.Option(
        "--store",
        envvar="PEPPERPY_EVENT_STORE",
        help="Store URL: sqlite:///path.db, postgresql://user@host/db or memory://.",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print each event as a JSON object.")]
StreamsOption = Annotated[
    list[str] | None, typer.Option("--streams", help="Only streams matching this pattern.")
]
TypesOption = Annotated[
    list[str] | None, typer.Option("--types", help="Only event types matching this pattern.")
]

stderr = Console(stderr=True, highlight=False, soft_wrap=True)


def emit(line: str) -> None:
    """Print one line to stdout at once (a pipe or a test reads it while we run)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def note(text: str) -> None:
    """A remark for the person at the terminal (stderr, plain text)."""
    stderr.print(text, markup=False)


def run(work: Callable[[], Awaitable[T]]) -> T:
    """Run one subcommand's coroutine on a fresh event loop."""

    async def main() -> T:
        return await work()

    return asyncio.run(main())


def open_store(url: str, *, must_exist: bool = False) -> EventStore:
    """The store at ``url``; for reading commands an SQLite file must already exist."""
    if url.partition("://")[0].lower() == "sqlite":
        path = sqlite_path(url)
        if must_exist and not path.exists():
            raise CommandError(
                f"no event store at {str(path)!r} (run 'pepperpy-event demo' or "
                "'pepperpy-event append' first, or pass --store)"
            )
        if not path.parent.exists():
            raise CommandError(f"directory {str(path.parent)!r} does not exist (from --store)")
    return EventStore(url)


def parse_expected(text: str | None) -> ExpectedVersion:
    """``--expected-version``: a position, ``any``, ``no-stream`` or ``exists``."""
    if text is None:
        return ANY
    named = {"any": ANY, "no-stream": NO_STREAM, "no_stream": NO_STREAM}
    named |= {"exists": STREAM_EXISTS, "stream-exists": STREAM_EXISTS}
    key = text.strip().lower()
    if key in named:
        return named[key]
    if key.isdigit():
        return int(key)
    raise CommandError(
        f"--expected-version must be a position (0, 1, ...), any, no-stream or exists; got {text!r}"
    )


def parse_json(text: str, what: str) -> Any:
    try:
        return _json.loads(text)
    except ValueError as exc:
        raise CommandError(f"{what} is not valid JSON: {exc}") from exc


# -- subcommands ---------------------------------------------------------------------------


@app.command()
def demo(store: StoreOption = DEFAULT_STORE) -> None:
    """Run an online-shop scenario end to end and record its history in the store."""
    from ._demo import run_demo

    run(lambda: run_demo(store, emit))


@app.command()
def append(
    stream: Annotated[str, typer.Argument(help="Stream name, e.g. user.123.")],
    event_type: Annotated[str, typer.Argument(metavar="TYPE", help="Event type.")],
    data: Annotated[str, typer.Argument(metavar="JSON", help="Event data as JSON.")],
    store: StoreOption = DEFAULT_STORE,
    expected_version: Annotated[
        str | None,
        typer.Option(
            "--expected-version",
            help="Fail unless the stream is at this position (or any / no-stream / exists).",
        ),
    ] = None,
    metadata: Annotated[
        str | None, typer.Option("--metadata", help="Event metadata as a JSON object.")
    ] = None,
) -> None:
    """Append one event to STREAM."""
    payload = parse_json(data, "JSON data")
    meta = None if metadata is None else parse_json(metadata, "--metadata")
    if meta is not None and not isinstance(meta, dict):
        raise CommandError("--metadata must be a JSON object")
    expected = parse_expected(expected_version)

    async def work() -> None:
        async with open_store(store) as events:
            event = Event(event_type, payload, meta)
            result = await events.append(stream, event, expected_version=expected)
        emit(
            f"appended {stream}:{result.next_expected_version} {event_type} "
            f"(global position {result.global_position})"
        )

    run(work)


@app.command()
def read(
    stream: Annotated[str, typer.Argument(help="Stream name.")],
    store: StoreOption = DEFAULT_STORE,
    start: Annotated[
        int | None, typer.Option("--from", min=0, help="First position to print.")
    ] = None,
    backwards: Annotated[bool, typer.Option("--backwards", help="Newest first.")] = False,
    limit: Annotated[int | None, typer.Option("--limit", min=0, help="At most N events.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Print the events of STREAM, one line each: POSITION TYPE DATA."""

    async def work() -> None:
        async with open_store(store, must_exist=True) as events:
            if await events.stream_version(stream) is None:
                raise CommandError(f"stream {stream!r} does not exist in {store}")
            reader = events.get_stream(stream, start, backwards=backwards, limit=limit)
            async for event in reader:
                emit(event_json(event) if as_json else stream_line(event))

    run(work)


@app.command()
def tail(
    store: StoreOption = DEFAULT_STORE,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing events as they are appended.")
    ] = False,
    lines: Annotated[int, typer.Option("--lines", "-n", min=0, help="Show the last N.")] = 10,
    count: Annotated[
        int | None,
        typer.Option("--count", min=1, help="With -f: stop after N new events."),
    ] = None,
    streams: StreamsOption = None,
    types: TypesOption = None,
    as_json: JsonOption = False,
) -> None:
    """Print the last events of the global log; with -f, follow new ones live."""

    def show(event: Event) -> None:
        emit(event_json(event) if as_json else global_line(event))

    async def work() -> None:
        async with open_store(store, must_exist=not follow) as events:
            last: deque[Event] = deque(maxlen=lines)
            next_position = 0
            async for event in events.read_all(0, streams=streams, types=types):
                last.append(event)
                next_position = (event.global_position or 0) + 1
            for event in last:
                show(event)
            if not follow:
                return
            seen = 0
            subscription = events.subscribe(next_position, streams=streams, types=types)
            async for event in subscription:
                show(event)
                seen += 1
                if count is not None and seen >= count:
                    break

    run(work)


@app.command("streams")
def list_streams(
    pattern: Annotated[str, typer.Argument(help="Stream pattern, e.g. 'user.*'.")] = "#",
    store: StoreOption = DEFAULT_STORE,
) -> None:
    """List stream names with their event counts: NAME EVENTS."""

    async def work() -> None:
        async with open_store(store, must_exist=True) as events:
            for name in await events.streams(pattern):
                version = await events.stream_version(name)
                emit(f"{name} {0 if version is None else version + 1}")

    run(work)


@app.command()
def replay(
    store: StoreOption = DEFAULT_STORE,
    stream: Annotated[
        str | None, typer.Option("--stream", help="Replay one stream (else the global log).")
    ] = None,
    streams: StreamsOption = None,
    types: TypesOption = None,
    start_time: Annotated[
        str | None,
        typer.Option(
            "--start-time", "--from", help="ISO-8601 time, inclusive (2023-01-01T00:00Z)."
        ),
    ] = None,
    end_time: Annotated[
        str | None, typer.Option("--end-time", "--to", help="ISO-8601 time, exclusive.")
    ] = None,
    start_pos: Annotated[
        int, typer.Option("--start-pos", min=0, help="First position (stream or global).")
    ] = 0,
    speed: Annotated[
        float | None,
        typer.Option("--speed", help="Pace events: 1.0 = original gaps, 2.0 = twice as fast."),
    ] = None,
    checkpoint: Annotated[
        str | None, typer.Option("--checkpoint", help="Resume after the last run of this name.")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the summary.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Replay stored events (printing them) within a time window, with a progress bar."""
    if stream is not None and streams:
        raise CommandError("--stream and --streams cannot be combined")

    def show(event: Event) -> None:
        if not quiet:
            emit(event_json(event) if as_json else global_line(event))

    async def work() -> ReplayReport:
        async with open_store(store, must_exist=True) as events:
            if stream is not None and await events.stream_version(stream) is None:
                raise CommandError(f"stream {stream!r} does not exist in {store}")
            async with EventReplay(events) as replayer:
                replayer.handle("#", show)
                with progress_bar("replaying") as advance:
                    if stream is not None:
                        return await replayer.replay_stream(
                            stream,
                            start_time,
                            end_time,
                            start_pos,
                            types=types,
                            speed=speed,
                            progress=advance,
                            progress_every=50,
                            checkpoint=checkpoint,
                        )
                    return await replayer.replay_all(
                        start_time,
                        end_time,
                        start_pos,
                        streams=streams,
                        types=types,
                        speed=speed,
                        progress=advance,
                        progress_every=50,
                        checkpoint=checkpoint,
                    )

    report = run(work)
    where = "" if report.last_position is None else f", last position {report.last_position}"
    note(
        f"replayed {report.replayed}, skipped {report.skipped}, failed {report.failed} "
        f"in {report.duration:.3f}s{where}"
    )


@app.command()
def stats(
    store: StoreOption = DEFAULT_STORE,
    streams: StreamsOption = None,
) -> None:
    """Count streams, events, and events per type."""

    async def work() -> None:
        async with open_store(store, must_exist=True) as events:
            names = await events.streams()
            per_type: Counter[str] = Counter()
            with progress_bar("counting") as advance:
                total = 0
                async for event in events.read_all(0, streams=streams):
                    per_type[event.type] += 1
                    total += 1
                    if total % 500 == 0:
                        advance(ReplayProgress(total, total, 0, 0, event.global_position, None, 0))
        emit(f"store: {store}")
        emit(f"streams: {len(names)}")
        emit(f"events: {total}")
        if per_type:
            emit("events by type:")
            width = max(len(name) for name in per_type)
            for name, number in sorted(per_type.items(), key=lambda item: (-item[1], item[0])):
                emit(f"  {name:<{width}} {number}")

    run(work)


@contextmanager
def progress_bar(label: str) -> Iterator[Callable[[ReplayProgress], None]]:
    """A rich progress bar on stderr when it is a terminal; a no-op callback otherwise."""
    if not stderr.is_terminal:
        yield lambda progress: None
        return
    columns = (
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=stderr, transient=True) as bar:
        task = bar.add_task(label, total=None)

        def advance(progress: ReplayProgress) -> None:
            bar.update(task, completed=progress.read, total=progress.total)

        yield advance
