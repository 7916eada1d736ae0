"""The ``pepperpy-event`` subcommands (click), each a thin shell over the async API.

Every subcommand takes ``--store URL`` (or ``PEPPERPY_EVENT_STORE``; default an SQLite
file ``events.db`` in the working directory). Events go to stdout, one per line;
summaries, progress bars and errors go to stderr, so pipes see only events.

click rather than typer: typer imports pydantic, which added about 170 ms to the start-up of
every invocation; rich is imported only to draw a progress bar on a terminal.

Beside this module: what the subcommands share (``_shell``: the --store option, the
arguments, the output and the event loop a command runs on), and the commands ``serve``
(``_serve``), ``audit`` (``_audit``) and ``bus`` (``_bus``: a broker's topics, not the store).
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import click

from .._errors import ConcurrencyError, ReplayError, StreamDeletedError
from .._event import Event
from .._replay import EventReplay, ReplayProgress, ReplayReport
from .._seconds import check_seconds
from ..store import AppendResult, EventStore
from ._audit import audit
from ._bus import bus
from ._checkpoints import checkpoints
from ._copy import COMMANDS as COPY_COMMANDS
from ._counts import count_streams, stream_counts
from ._errors import CommandError, NotPrinted, OutputClosed
from ._output import event_json, field, global_line, stream_line
from ._serve import serve
from ._shell import (
    DEFAULT_STORE,
    LARGEST,
    POSITION,
    checked_name,
    confirm,
    emit,
    filter_options,
    json_argument,
    json_option,
    note,
    open_store,
    parse_expected,
    patterns,
    refuse_plain_into_encrypted,
    run,
    store_option,
    time_window,
    verbose_everywhere,
    waited_for,
    why_not_printed,
)
from ._tail import KEPT_LINES, last_events, last_start
from ._urls import shown

__all__ = ["DEFAULT_STORE", "CommandError", "OutputClosed", "app"]

#: ``stats`` counts every event recorded since then: all of them
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@click.group(
    name="pepperpy-event",
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(package_name="pepperpy-event", prog_name="pepperpy-event")
@click.option(
    "--store",
    "group_store",
    metavar="URL",
    help="Store URL for the subcommand (it may also be given after the subcommand).",
)
@click.pass_context
def app(context: click.Context, group_store: str | None) -> None:
    """Drive a pepperpy-event store (--store URL) and a broker's topics (bus) from the shell."""
    context.obj = group_store


# -- subcommands ---------------------------------------------------------------------------


@app.command()
@store_option
def demo(store: str) -> None:
    """Run an online-shop scenario end to end and record its history in the store."""
    from ._demo import run_demo

    run(lambda: run_demo(store, emit))


@app.command()
@click.argument("stream")
@click.argument("event_type", metavar="TYPE")
@click.argument("data", metavar="JSON")
@store_option
@click.option(
    "--expected-version",
    help="Fail unless the stream is at this position (or any / no-stream / exists).",
)
@click.option(
    "--metadata", metavar="JSON", help="Event metadata as a JSON object (or @FILE, or @-)."
)
def append(
    stream: str,
    event_type: str,
    data: str,
    store: str,
    expected_version: str | None,
    metadata: str | None,
) -> None:
    """Append one event of TYPE with JSON data to STREAM.

    JSON (and --metadata) may be @FILE to read it from a file, or @- to read it from stdin.
    """
    checked_name(stream, "STREAM", "stream")
    checked_name(event_type, "TYPE", "type")
    if data == "@-" and metadata == "@-":
        raise CommandError("JSON and --metadata cannot both be @-: there is one stdin")
    payload = json_argument(data)
    meta = None if metadata is None else json_argument(metadata, "--metadata")
    if meta is not None and not isinstance(meta, dict):
        raise CommandError("--metadata must be a JSON object")
    expected = parse_expected(expected_version)
    try:
        event = Event(event_type, payload, meta)
    except TypeError as exc:  # data nested too deep, say: the user's mistake, not ours
        raise CommandError(f"cannot make the event: {exc}") from None

    async def work() -> AppendResult:
        async with open_store(store) as events:
            await refuse_plain_into_encrypted(events, stream, store)
            try:
                return await events.append(stream, event, expected_version=expected)
            except StreamDeletedError:  # its hint names the Python API's NO_STREAM
                raise CommandError(
                    f"stream {stream!r} was deleted; append with --expected-version no-stream"
                    " to start it again"
                ) from None

    result = run(work)
    confirm(
        f"appended {field(stream)}:{result.next_expected_version} {field(event_type)} "
        f"(global position {result.global_position})"
    )


@app.command()
@click.argument("stream")
@store_option
@click.option("--from", "start", type=POSITION, help="First position to print.")
@click.option("--backwards", is_flag=True, help="Newest first.")
@click.option("--limit", type=POSITION, help="At most N events.")
@json_option
def read(
    stream: str, store: str, start: int | None, backwards: bool, limit: int | None, as_json: bool
) -> None:
    """Print the events of STREAM, one line each: POSITION TYPE DATA."""
    checked_name(stream, "STREAM", "stream")

    async def work() -> None:
        async with open_store(store, reading=True, must_exist=True) as events:
            if await events.stream_version(stream) is None:
                raise CommandError(f"stream {stream!r} does not exist in {shown(store)}")
            reader = events.get_stream(stream, start, backwards=backwards, limit=limit)
            async for event in reader:
                emit(event_json(event) if as_json else stream_line(event))

    run(work)


@app.command()
@store_option
@click.option("-f", "--follow", is_flag=True, help="Keep printing events as they are appended.")
@click.option(
    "-n",
    "--lines",
    default=10,
    show_default=True,
    type=POSITION,
    help="Show the last N.",
)
@click.option("--count", type=click.IntRange(1, LARGEST), help="With -f: stop after N new events.")
@filter_options
@json_option
def tail(
    store: str,
    follow: bool,
    lines: int,
    count: int | None,
    streams: tuple[str, ...],
    types: tuple[str, ...],
    as_json: bool,
) -> None:
    """Print the last events of the global log: GLOBAL STREAM:POSITION TYPE DATA.

    With -f, keep following new events live until interrupted (or --count is reached).
    """
    if count is not None and not follow:  # it was ignored: tail --count 2 printed 10
        raise click.UsageError(
            "--count stops tail -f after N new events: give -f too (-n N shows the last N)"
        )
    stream_filter = patterns(streams, "--streams")
    type_filter = patterns(types, "--types")

    def show(event: Event) -> None:
        emit(event_json(event) if as_json else global_line(event))

    async def work() -> None:
        async with open_store(store, reading=True, must_exist=not follow, wait=follow) as events:
            if waited_for(events):  # started before the store: every event is news
                await follow_from(events, 0)
                return
            if lines <= KEPT_LINES:
                last, next_position = await last_events(events, lines, stream_filter, type_filter)
                for event in last:
                    show(event)
            else:  # printed as read, not from a list of them all
                first, found, next_position = await last_start(
                    events, lines, stream_filter, type_filter
                )
                if found:
                    oldest_first = events.read_all(
                        first, streams=stream_filter, types=type_filter, limit=found
                    )
                    async for event in oldest_first:
                        show(event)
            if follow:
                await follow_from(events, next_position)

    async def follow_from(events: EventStore, position: int) -> None:
        seen = 0
        live = events.subscribe(position, streams=stream_filter, types=type_filter)
        async with live:
            async for event in live:
                show(event)
                seen += 1
                if count is not None and seen >= count:
                    break

    try:  # following, it may print nothing for long: it watches for the reader leaving
        run(work, watch_stdout=follow)
    except KeyboardInterrupt:  # Ctrl-C is how tail -f is meant to stop
        pass


@app.command("streams")
@click.argument("pattern", default="#")
@store_option
def list_streams(pattern: str, store: str) -> None:
    """List streams matching PATTERN (default all) with their event counts: NAME EVENTS."""
    checked_name(pattern, "PATTERN", "pattern")

    async def work() -> None:
        async with open_store(store, reading=True, must_exist=True) as events:
            async for page in stream_counts(events, pattern):  # printed as each is counted
                for name, count in page:
                    emit(f"{field(name)} {count}")

    run(work)


@app.command()
@store_option
@click.option("--stream", help="Replay one stream (else the global log).")
@filter_options
@click.option(
    "--start-time", "--from", "start_time", help="ISO-8601 time, inclusive (2023-01-01T00:00:00Z)."
)
@click.option("--end-time", "--to", "end_time", help="ISO-8601 time, exclusive.")
@click.option("--start-pos", default=0, type=POSITION, help="First position (stream or global).")
@click.option("--speed", type=float, help="Pace events: 1.0 = original gaps, 2.0 = twice as fast.")
@click.option(
    "--max-gap", type=float, help="With --speed (required): never pause longer than this (seconds)."
)
@click.option("--checkpoint", help="Resume after the last run with this name.")
@click.option(
    "--reset",
    is_flag=True,
    help="Forget --checkpoint's saved position first: start over from --start-pos.",
)
@click.option("-q", "--quiet", is_flag=True, help="Print only the summary.")
@json_option
def replay(
    store: str,
    stream: str | None,
    streams: tuple[str, ...],
    types: tuple[str, ...],
    start_time: str | None,
    end_time: str | None,
    start_pos: int,
    speed: float | None,
    max_gap: float | None,
    checkpoint: str | None,
    reset: bool,
    quiet: bool,
    as_json: bool,
) -> None:
    """Replay stored events (printing them) within a time window, with a progress bar.

    The summary (replayed, skipped, failed, duration) goes to stderr. An event that
    cannot be printed stops the replay there (exit status 1), before its checkpoint.
    """
    if stream is not None and streams:
        raise CommandError("--stream and --streams cannot be combined")
    if max_gap is not None and speed is None:
        raise click.UsageError("--max-gap caps the pauses of --speed: give --speed too")
    if stream is not None:
        checked_name(stream, "--stream", "stream")
    if checkpoint is not None and not checkpoint:
        raise CommandError("--checkpoint is empty: give the checkpoint's name, such as nightly")
    if reset and checkpoint is None:
        raise click.UsageError("--reset forgets a --checkpoint: give --checkpoint NAME too")
    window = time_window(start_time, end_time)
    if speed is not None and not speed > 0:  # NaN too
        raise CommandError(f"--speed must be a number > 0 (2 = twice as fast), got {speed}")
    if max_gap is not None:
        check_seconds(max_gap, "--max-gap", zero=True, error=CommandError)
    stream_filter = patterns(streams, "--streams")
    type_filter = patterns(types, "--types")

    def show(event: Event) -> None:
        if quiet:
            return
        try:
            emit(event_json(event) if as_json else global_line(event))
        except Exception as exc:  # a full disk: stop here, not count it failed and go on
            resumes = "" if checkpoint is None else f", and checkpoint {checkpoint!r} resumes at it"
            raise NotPrinted(
                f"could not print the event at global position {event.global_position} "
                f"({field(event.stream)}:{event.position}) to stdout ({why_not_printed(exc)}); "
                f"the replay stopped there{resumes}"
            ) from exc

    async def work() -> ReplayReport:
        async with open_store(store, reading=True, must_exist=True) as events:
            if stream is not None and await events.stream_version(stream) is None:
                raise CommandError(f"stream {stream!r} does not exist in {shown(store)}")
            async with EventReplay(events) as replayer:
                if checkpoint is not None and replayer.checkpoints.read_only:
                    raise CommandError(  # the library's words were checkpoint= and checkpoints=
                        f"--checkpoint {checkpoint!r} cannot be saved: the store "
                        f"{shown(store)} is open read-only, so nothing was replayed; replay "
                        "without --checkpoint, or with a --store that can be written"
                    )
                if reset:
                    assert checkpoint is not None
                    await replayer.reset(checkpoint)
                replayer.handle("#", show)
                with progress_bar("replaying", printing=not quiet) as advance:
                    if stream is not None:
                        return await replayer.replay_stream(
                            stream,
                            *window,
                            start_pos,
                            types=type_filter,
                            speed=speed,
                            max_gap=max_gap,
                            progress=advance,
                            progress_every=50,
                            checkpoint=checkpoint,
                        )
                    return await replayer.replay_all(
                        *window,
                        start_pos,
                        streams=stream_filter,
                        types=type_filter,
                        speed=speed,
                        max_gap=max_gap,
                        progress=advance,
                        progress_every=50,
                        checkpoint=checkpoint,
                    )

    try:
        report = run(work, watch_stdout=speed is not None)  # its pauses print nothing
    except ReplayError as exc:
        if checkpoint is None or not str(exc).endswith("reset it"):
            raise
        # the library's "reset it" is replay.reset(), which a shell has as --reset
        raise CommandError(
            f"{exc} (--reset starts it over: replay --checkpoint {checkpoint} --reset)"
        ) from exc
    except ConcurrencyError as exc:
        if checkpoint is None:
            raise
        # the library's words were "stream 'checkpoint replay:NAME': expected version
        # None, actual version 320", which said nothing of a second replay
        raise CommandError(
            f"checkpoint {checkpoint!r} was moved meanwhile by another replay with "
            f"--checkpoint {checkpoint} (two at once on one store?): this one stopped "
            "without saving its position, and the checkpoint keeps the other's; run one "
            "replay per checkpoint name at a time"
        ) from exc
    where = "" if report.last_position is None else f", last position {report.last_position}"
    note(
        f"replayed {report.replayed}, skipped {report.skipped}, failed {report.failed} "
        f"in {report.duration:.3f}s{where}"
    )
    if report.failed:  # a script reads the status, not the summary
        raise SystemExit(1)


@app.command()
@store_option
@click.option("--streams", multiple=True, help="Only streams matching this pattern.")
def stats(store: str, streams: tuple[str, ...]) -> None:
    """Count streams, events, and events per type."""
    chosen = patterns(streams, "--streams")

    async def work() -> None:
        async with open_store(store, reading=True, must_exist=True) as events:
            counted_streams = await count_streams(events, streams or ("#",))
            per_type: Counter[str] = Counter()
            total = 0
            if not streams:  # the whole log: the store counts by type, decoding nothing
                for counted in await events.count_by_minute(_EPOCH):
                    per_type[counted.type] += counted.events
                total = per_type.total()
            else:
                with progress_bar("counting", printing=False) as advance:
                    async for event in events.read_all(0, streams=chosen):
                        per_type[event.type] += 1
                        total += 1
                        if total % 500 == 0:
                            position = event.global_position
                            advance(ReplayProgress(total, total, 0, 0, position, None, 0))
        emit(f"store: {shown(store)}")
        emit(f"streams: {counted_streams}")
        emit(f"events: {total}")
        if per_type:
            emit("events by type:")
            width = max(len(field(name)) for name in per_type)
            for name, number in sorted(per_type.items(), key=lambda item: (-item[1], item[0])):
                emit(f"  {field(name):<{width}} {number}")

    run(work)


@contextmanager
def progress_bar(label: str, *, printing: bool) -> Iterator[Callable[[ReplayProgress], None]]:
    """A rich progress bar on stderr when it is a terminal; a no-op callback otherwise.

    Events still go to stdout, never through the bar's console (rich would otherwise
    redirect ``sys.stdout`` into stderr while the bar is live, taking events away from a
    file or pipe). ``printing`` says that stdout is written while the bar runs: then the
    bar shows only when stdout is not a terminal too, where the lines would cut into it.
    """
    if not sys.stderr.isatty() or (printing and sys.stdout.isatty()):
        yield lambda progress: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    columns = (TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(
        *columns, console=console, transient=True, redirect_stdout=False, redirect_stderr=False
    ) as bar:
        task = bar.add_task(label, total=None)

        def advance(progress: ReplayProgress) -> None:
            bar.update(task, completed=progress.read, total=progress.total)

        yield advance


@app.command()
@click.argument("event_type", metavar="[TYPE", required=False)
@click.argument("data", metavar="JSON]", required=False)
@store_option
@click.option(
    "--schema",
    "schemas",
    multiple=True,
    metavar="TYPE[@V]=FILE",
    help="A JSON Schema file for an event type (version V, default 1). Repeatable.",
)
@click.option("--validator", "validator_spec", metavar="MODULE:ATTR", help="An EventValidator.")
@filter_options
def validate(
    event_type: str | None,
    data: str | None,
    store: str,
    schemas: tuple[str, ...],
    validator_spec: str | None,
    streams: tuple[str, ...],
    types: tuple[str, ...],
) -> None:
    """Validate TYPE JSON, or (without them) every stored event that has a schema.

    JSON may be @FILE to read it from a file, or @- to read it from stdin.

    Invalid stored events are printed one per line (GLOBAL STREAM:POSITION TYPE: problems);
    the exit status is 1 if any is invalid.
    """
    from ._validate import Checked, build_validator, check_store

    if (event_type is None) != (data is None):
        raise CommandError("give both TYPE and JSON, or neither (to check the store)")
    if event_type is not None:  # else a malformed TYPE read as one without a schema
        checked_name(event_type, "TYPE", "type")
    validator = build_validator(schemas, validator_spec)
    if event_type is not None and data is not None:
        payload = json_argument(data)
        valid = run(lambda: validator.validate(event_type, payload))
        emit(f"valid {valid.type} (version {valid.version})")
        return

    async def work() -> Checked:
        async with open_store(store, reading=True, must_exist=True) as events:
            return await check_store(
                events, validator, patterns(streams, "--streams"), patterns(types, "--types"), emit
            )

    checked, invalid, unchecked, sealed = run(work)
    summary = f"checked {checked}, invalid {invalid}, without a schema {unchecked}"
    if sealed:
        summary += f", encrypted {sealed} (not checked: the command holds no key)"
    note(summary)
    if invalid:
        raise CommandError(f"{invalid} of {checked} checked events are invalid")


@app.command()
@store_option
@click.option(
    "--events", default=10_000, show_default=True, type=click.IntRange(min=10), help="Events."
)
@click.option(
    "--tasks",
    type=click.IntRange(min=1),
    help="Writer tasks, at most --events.  [default: 20, or --events if fewer]",
)
@click.option(
    "--batch", default=100, show_default=True, type=click.IntRange(min=1), help="Batch size."
)
@click.option(
    "--force",
    is_flag=True,
    help="Run on a store that already holds events (its live followers see the bench's"
    " events, and their soft-deleted rows stay in it).",
)
def bench(store: str, events: int, tasks: int | None, batch: int, force: bool) -> None:
    """Measure appends, reads and replay on the store (writes, then soft-deletes, bench.*)."""
    from ._bench import run_bench

    if tasks is None:
        tasks = min(20, events)
    elif tasks > events:  # it wrote one event per task, --tasks events in all
        raise click.UsageError(
            f"--tasks {tasks} is more than --events {events}: each writer task appends "
            "at least one of the events"
        )

    async def work() -> None:
        async with open_store(store) as opened:
            if not force and await opened.read_all(0, limit=1):
                raise CommandError(
                    f"the store at {shown(store)} already holds events: bench appends"
                    f" {2 * events:,} events to it, which its live followers (tail -f,"
                    " projections, subscriptions) receive, and whose soft-deleted rows"
                    " stay in it; pass --force to run it there anyway, or measure a scratch"
                    " store (--store sqlite:///bench.db)"
                )
            emit(f"store: {shown(store)}")
            await run_bench(opened, events, tasks, batch, emit)

    run(work)


app.add_command(serve)
app.add_command(audit)
app.add_command(bus)
app.add_command(checkpoints)
for command in COPY_COMMANDS:  # export, import, copy
    app.add_command(command)
verbose_everywhere(app)
