"""The ``pepperpy-event`` subcommands (click), each a thin shell over the async API.

Every subcommand takes ``--store URL`` (or ``PEPPERPY_EVENT_STORE``; default an SQLite
file ``events.db`` in the working directory). Events go to stdout, one per line;
summaries, progress bars and errors go to stderr, so pipes see only events.

click rather than typer: typer imports pydantic, which added about 170 ms to the start-up of
every invocation; rich is imported only to draw a progress bar on a terminal.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import pathlib
import signal
import socket
import sys
import threading
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import click

from .. import _json
from .._checkpoints import sqlite_path
from .._deps import require
from .._errors import SerializationError
from .._event import Event
from .._patterns import parse_pattern
from .._replay import EventReplay, ReplayProgress, ReplayReport
from ..store import ANY, NO_STREAM, STREAM_EXISTS, EventStore
from ..store.base import ExpectedVersion
from ._counts import stream_counts
from ._errors import CommandError, OutputClosed
from ._output import event_json, field, global_line, stream_line
from ._tail import last_events
from ._urls import normalized, shown

__all__ = ["DEFAULT_STORE", "CommandError", "OutputClosed", "app"]

DEFAULT_STORE = "sqlite:///events.db"
LARGEST = 2**63 - 1  # positions and counts: the store's largest position (signed 64-bit)
POSITION = click.IntRange(0, LARGEST)
T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


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
    """Inspect and drive a pepperpy-event store from the shell (--store URL on every command)."""
    context.obj = group_store


def _store_value(context: click.Context, parameter: click.Parameter, value: str) -> str:
    """A subcommand's --store: its own if given, else the group's, else env, else default."""
    own = context.get_parameter_source(parameter.name or "store")
    group_store = context.find_object(str)
    if own is not click.core.ParameterSource.COMMANDLINE and group_store is not None:
        return normalized(group_store)
    return normalized(value)


def store_option(function: F) -> F:
    return click.option(
        "--store",
        envvar="PEPPERPY_EVENT_STORE",
        default=DEFAULT_STORE,
        show_default=True,
        callback=_store_value,
        help="Store URL: sqlite:///path.db, postgresql://user@host/db or memory:// "
        "(env PEPPERPY_EVENT_STORE).",
    )(function)


def json_option(function: F) -> F:
    return click.option(
        "--json", "as_json", is_flag=True, help="Print each event as a JSON object."
    )(function)


def filter_options(function: F) -> F:
    function = click.option(
        "--types", multiple=True, help="Only event types matching this pattern (repeatable)."
    )(function)
    return click.option(
        "--streams", multiple=True, help="Only streams matching this pattern (repeatable)."
    )(function)


def emit(line: str) -> None:
    """Print one line to stdout at once (a pipe or a test reads it while we run).

    Raises :class:`OutputClosed` when the reader has closed the pipe.
    """
    try:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        raise OutputClosed from None


def note(text: str) -> None:
    """A remark for the person at the terminal (stderr)."""
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def run(work: Callable[[], Awaitable[T]], *, on_signal: Callable[[int], bool] | None = None) -> T:
    """Run one subcommand's coroutine on a fresh event loop; Ctrl-C raises KeyboardInterrupt.

    Ctrl-C cancels the work from a loop callback (``loop.add_signal_handler``), not from
    ``asyncio.run``'s own SIGINT handler: that one cancels the task from inside the signal
    handler, which can land in the middle of another callback (such as the one handing a
    thread's result to a future the task awaits) and make it fail with a traceback.

    With ``on_signal`` (``serve``), SIGINT and SIGTERM go to it first: when it returns
    True it has taken care of the signal (a graceful stop) and the work runs on.
    """

    async def main() -> T:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        interrupted = False

        def interrupt(signum: int) -> None:
            nonlocal interrupted
            if on_signal is not None and on_signal(signum):
                return
            interrupted = True
            if task is not None:
                task.cancel()

        signals = [signal.SIGINT] if on_signal is None else [signal.SIGINT, signal.SIGTERM]
        installed: list[int] = []
        if threading.current_thread() is threading.main_thread():
            for signum in signals:
                with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                    loop.add_signal_handler(signum, interrupt, signum)
                    installed.append(signum)
        try:
            return await work()
        except asyncio.CancelledError:
            if interrupted:
                raise KeyboardInterrupt from None
            raise
        finally:
            for handled in installed:
                loop.remove_signal_handler(handled)

    return asyncio.run(main())


def patterns(values: tuple[str, ...]) -> list[str] | None:
    """``--streams``/``--types`` values, each checked now (a PatternError names the fault).

    Checked before the store is read: ``tail`` on an empty store or with ``-n 0`` reads
    nothing that would refuse a bad pattern, and exited 0 in silence.
    """
    for value in values:
        parse_pattern(value)
    return list(values) if values else None


@contextlib.asynccontextmanager
async def open_store(
    url: str, *, reading: bool = False, must_exist: bool = False
) -> AsyncIterator[EventStore]:
    """The store at ``url``, open for the length of the block.

    Reading commands (``reading``) never make a store of a file: an existing SQLite file
    must already be an event store (an empty file, or another application's database,
    is refused and left as it is), checked before anything else opens it (a replay's
    checkpoint table); with ``must_exist`` a missing file is refused too. A bad URL (a
    port out of range, say) is refused by the store itself, before it connects.
    """
    path = None
    if url.partition("://")[0].lower() == "sqlite":
        path = sqlite_path(url)
        if must_exist and not path.exists():
            raise CommandError(
                f"no event store at {str(path)!r} (run 'pepperpy-event demo' or "
                "'pepperpy-event append' first, or pass --store)"
            )
        if not path.parent.exists():
            raise CommandError(f"directory {str(path.parent)!r} does not exist (from --store)")
    async with EventStore(url) as store:
        if reading and path is not None and path.exists():
            from ..store.sqlite import SQLiteBackend

            if isinstance(store.backend, SQLiteBackend):
                store.backend.create = False
                await store.read_all(0, limit=1)  # refuses a file that is not a store
        yield store


def parse_expected(text: str | None) -> ExpectedVersion:
    """``--expected-version``: a position, ``any``, ``no-stream`` or ``exists``."""
    if text is None:
        return ANY
    named = {"any": ANY, "no-stream": NO_STREAM, "no_stream": NO_STREAM}
    named |= {"exists": STREAM_EXISTS, "stream-exists": STREAM_EXISTS}
    key = text.strip().lower()
    if key in named:
        return named[key]
    if key.isascii() and key.isdigit() and int(key) <= LARGEST:
        return int(key)
    raise CommandError(
        f"--expected-version must be a position (0 to {LARGEST}), any, no-stream or exists; "
        f"got {text!r}"
    )


def parse_json(text: str, what: str) -> Any:
    try:
        return _json.loads(text)
    except SerializationError as exc:
        raise CommandError(f"{what}: {exc}") from exc


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
@click.option("--metadata", help="Event metadata as a JSON object.")
def append(
    stream: str,
    event_type: str,
    data: str,
    store: str,
    expected_version: str | None,
    metadata: str | None,
) -> None:
    """Append one event of TYPE with JSON data to STREAM."""
    payload = parse_json(data, "JSON data")
    meta = None if metadata is None else parse_json(metadata, "--metadata")
    if meta is not None and not isinstance(meta, dict):
        raise CommandError("--metadata must be a JSON object")
    expected = parse_expected(expected_version)
    try:
        event = Event(event_type, payload, meta)
    except TypeError as exc:  # an empty TYPE, say: the user's mistake, not ours
        raise CommandError(f"cannot make the event: {exc}") from None

    async def work() -> None:
        async with open_store(store) as events:
            result = await events.append(stream, event, expected_version=expected)
        emit(
            f"appended {stream}:{result.next_expected_version} {event_type} "
            f"(global position {result.global_position})"
        )

    run(work)


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
    stream_filter, type_filter = patterns(streams), patterns(types)

    def show(event: Event) -> None:
        emit(event_json(event) if as_json else global_line(event))

    async def work() -> None:
        async with open_store(store, reading=True, must_exist=not follow) as events:
            last, next_position = await last_events(events, lines, stream_filter, type_filter)
            for event in last:
                show(event)
            if not follow:
                return
            seen = 0
            live = events.subscribe(next_position, streams=stream_filter, types=type_filter)
            async with live:
                async for event in live:
                    show(event)
                    seen += 1
                    if count is not None and seen >= count:
                        break

    try:
        run(work)
    except KeyboardInterrupt:  # Ctrl-C is how tail -f is meant to stop
        pass


@app.command("streams")
@click.argument("pattern", default="#")
@store_option
def list_streams(pattern: str, store: str) -> None:
    """List streams matching PATTERN (default all) with their event counts: NAME EVENTS."""

    async def work() -> None:
        async with open_store(store, reading=True, must_exist=True) as events:
            for name, count in await stream_counts(events, pattern):
                emit(f"{name} {count}")

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
    quiet: bool,
    as_json: bool,
) -> None:
    """Replay stored events (printing them) within a time window, with a progress bar.

    The summary (replayed, skipped, failed, duration) goes to stderr.
    """
    if stream is not None and streams:
        raise CommandError("--stream and --streams cannot be combined")
    if max_gap is not None and speed is None:
        raise click.UsageError("--max-gap caps the pauses of --speed: give --speed too")
    stream_filter, type_filter = patterns(streams), patterns(types)

    def show(event: Event) -> None:
        if not quiet:
            emit(event_json(event) if as_json else global_line(event))

    async def work() -> ReplayReport:
        async with open_store(store, reading=True, must_exist=True) as events:
            if stream is not None and await events.stream_version(stream) is None:
                raise CommandError(f"stream {stream!r} does not exist in {shown(store)}")
            async with EventReplay(events) as replayer:
                replayer.handle("#", show)
                with progress_bar("replaying", printing=not quiet) as advance:
                    if stream is not None:
                        return await replayer.replay_stream(
                            stream,
                            start_time,
                            end_time,
                            start_pos,
                            types=type_filter,
                            speed=speed,
                            max_gap=max_gap,
                            progress=advance,
                            progress_every=50,
                            checkpoint=checkpoint,
                        )
                    return await replayer.replay_all(
                        start_time,
                        end_time,
                        start_pos,
                        streams=stream_filter,
                        types=type_filter,
                        speed=speed,
                        max_gap=max_gap,
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
@store_option
@click.option("--streams", multiple=True, help="Only streams matching this pattern.")
def stats(store: str, streams: tuple[str, ...]) -> None:
    """Count streams, events, and events per type."""

    async def work() -> None:
        async with open_store(store, reading=True, must_exist=True) as events:
            wanted = streams or ("#",)
            names = {name for pattern in wanted for name in await events.streams(pattern)}
            per_type: Counter[str] = Counter()
            with progress_bar("counting", printing=False) as advance:
                total = 0
                async for event in events.read_all(0, streams=patterns(streams)):
                    per_type[event.type] += 1
                    total += 1
                    if total % 500 == 0:
                        advance(ReplayProgress(total, total, 0, 0, event.global_position, None, 0))
        emit(f"store: {shown(store)}")
        emit(f"streams: {len(names)}")
        emit(f"events: {total}")
        if per_type:
            emit("events by type:")
            width = max(len(name) for name in per_type)
            for name, number in sorted(per_type.items(), key=lambda item: (-item[1], item[0])):
                emit(f"  {name:<{width}} {number}")

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

    Invalid stored events are printed one per line (GLOBAL STREAM:POSITION TYPE: problems);
    the exit status is 1 if any is invalid.
    """
    from ._validate import build_validator, check_store

    if (event_type is None) != (data is None):
        raise CommandError("give both TYPE and JSON, or neither (to check the store)")
    validator = build_validator(schemas, validator_spec)
    if event_type is not None and data is not None:
        payload = parse_json(data, "JSON data")
        valid = run(lambda: validator.validate(event_type, payload))
        emit(f"valid {valid.type} (version {valid.version})")
        return

    async def work() -> tuple[int, int, int]:
        async with open_store(store, reading=True, must_exist=True) as events:
            return await check_store(events, validator, patterns(streams), patterns(types), emit)

    checked, invalid, unchecked = run(work)
    note(f"checked {checked}, invalid {invalid}, without a schema {unchecked}")
    if invalid:
        raise CommandError(f"{invalid} of {checked} checked events are invalid")


@app.command()
@store_option
@click.option(
    "--events", default=10_000, show_default=True, type=click.IntRange(min=10), help="Events."
)
@click.option(
    "--tasks", default=20, show_default=True, type=click.IntRange(min=1), help="Writer tasks."
)
@click.option(
    "--batch", default=100, show_default=True, type=click.IntRange(min=1), help="Batch size."
)
def bench(store: str, events: int, tasks: int, batch: int) -> None:
    """Measure appends, reads and replay on the store (writes, then soft-deletes, bench.*)."""
    from ._bench import run_bench

    async def work() -> None:
        async with open_store(store) as opened:
            emit(f"store: {shown(store)}")
            await run_bench(opened, events, tasks, batch, emit)

    run(work)


@app.command()
@store_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option(
    "--port",
    default=8080,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port (0 picks a free one; the URL is printed).",
)
@click.option(
    "--allow-host",
    "allow_hosts",
    multiple=True,
    metavar="NAME",
    help="Also answer requests for this host name (a proxy's, a LAN name); repeatable. "
    "'*' answers any (turns off the DNS-rebinding check).",
)
def serve(store: str, host: str, port: int, allow_hosts: tuple[str, ...]) -> None:
    """Serve a web console: browse streams and events, follow the log live (SSE).

    Only requests for 127.0.0.1, localhost, ::1, --host or an --allow-host name are
    answered (421 otherwise): a web page that rebinds its own name to this machine
    cannot read the console.
    """
    require("starlette", extra="web", feature="pepperpy-event serve")
    uvicorn = require("uvicorn", extra="web", feature="pepperpy-event serve")
    from ._console import LOOPBACK_HOSTS, console_app

    if host.startswith("[") and host.endswith("]"):  # an IPv6 address as a URL writes it
        host = host[1:-1]
    hosts = {*LOOPBACK_HOSTS, host, *allow_hosts}

    stopping = asyncio.Event()  # set by Ctrl-C or SIGTERM: live tails end, serving stops
    servers: list[Any] = []

    def stop(signum: int) -> bool:
        """Stop serving gracefully (a second Ctrl-C: at once); False before serving starts."""
        if not servers:
            return False
        if stopping.is_set() and signum == signal.SIGINT:
            servers[0].force_exit = True
        servers[0].should_exit = True
        stopping.set()
        return True

    async def work() -> None:
        with listen(host, port) as listener:
            async with open_store(store, reading=True) as events:
                config = uvicorn.Config(
                    console_app(events, allowed_hosts=hosts, stopping=stopping),
                    log_level="warning",
                    lifespan="off",
                    timeout_graceful_shutdown=GRACEFUL_SECONDS,
                )
                server = _server(config)
                servers.append(server)
                serving = asyncio.ensure_future(_serve_until_stopped(server, listener))
                # uvicorn offers no startup event to wait on, only the ``started`` flag
                while not server.started and not serving.done():  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
                if server.started:
                    bound = listener.getsockname()[1]
                    url = f"http://{address(host.replace('%', '%25'), bound)}/"  # a zone id
                    emit(f"pepperpy-event console on {url} (store {shown(store)})")
                    if not allow_hosts and not _is_loopback(host):
                        names = ", ".join(sorted(hosts))
                        note(
                            f"the console answers only requests for {names}; "
                            "give --allow-host NAME for each name its clients use"
                        )
                await serving  # returns once the requests in flight are answered
                if not server.started:
                    raise CommandError(f"could not listen on {address(host, port)}")
            # only now is the store closed: no request is left to find it closed

    try:
        run(work, on_signal=stop)
    except KeyboardInterrupt:  # a signal before the server was up
        pass
    note("stopped")


#: how long a stop waits for the requests in flight (live tails end at once)
GRACEFUL_SECONDS = 10


def _server(config: Any) -> Any:
    """A uvicorn server that leaves SIGINT and SIGTERM to ``serve``.

    uvicorn's own handlers raced ours (both saw Ctrl-C), and it raises the signal again
    once it has stopped: the work was cancelled while requests were in flight (answered
    "the event store is closed") and live tails ended in tracebacks.
    """
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    return Server(config)


def _is_loopback(host: str) -> bool:
    """True for ``localhost`` and a loopback address (``127.0.0.1``, ``::1``)."""
    try:
        return host.lower() == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def address(host: str, port: int) -> str:
    """``host:port`` as a URL writes it: an IPv6 address in brackets (``[::1]:8080``)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``, or a one-line error (busy port, unknown host).

    Bound here rather than by uvicorn, which reports these failures with ``sys.exit``.
    """
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        return socket.create_server((host, port), family=family)
    except socket.gaierror as exc:  # an unknown host
        raise CommandError(f"could not listen on {address(host, port)}: {exc.strerror}") from None
    except OSError as exc:  # a busy port, an address not on this machine, no permission
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise CommandError(f"could not listen on {address(host, port)}: {reason}") from None


async def _serve_until_stopped(server: Any, listener: socket.socket) -> None:
    """``server.serve`` on ``listener``; a ``sys.exit`` in uvicorn's startup ends it quietly."""
    with contextlib.suppress(SystemExit):
        await server.serve(sockets=[listener])


@app.group()
def audit() -> None:
    """Inspect a hash-chained audit log file (see pepperpy.event.security.AuditLog)."""


def _audit_key() -> bytes | None:
    """The audit log's HMAC key, from PEPPERPY_EVENT_AUDIT_KEY (hex), if it is set."""
    key_hex = os.environ.get("PEPPERPY_EVENT_AUDIT_KEY")
    try:
        return bytes.fromhex(key_hex) if key_hex else None
    except ValueError:
        raise CommandError("PEPPERPY_EVENT_AUDIT_KEY must be hex") from None


def _open_audit(path: str, key: bytes | None) -> Any:
    """The audit log file at ``path``, opened read-only (nothing here writes to it)."""
    from ..security import AuditLog

    if not pathlib.Path(path).is_file():
        raise CommandError(f"no audit log at {path!r}")
    return AuditLog(path, key=key, read_only=True)


def _verify_audit(path: str, key: bytes | None, **expected: Any) -> Any:
    log = _open_audit(path, key)
    try:
        return log.verify(**expected)
    finally:
        log.close()


#: what ``audit verify`` says when the key setting, not the log, is what fails
_KEY_PROBLEMS = {
    "missing_key": "is HMAC-keyed: put its key (hex) in PEPPERPY_EVENT_AUDIT_KEY, which is not set",
    "wrong_key": "is HMAC-keyed under another key than the one in PEPPERPY_EVENT_AUDIT_KEY "
    "(their fingerprints differ): set the log's key",
    "not_keyed": "is not HMAC-keyed, but PEPPERPY_EVENT_AUDIT_KEY is set: unset it to verify "
    "the log; if the log was written with that key, someone without the key rewrote it",
}


@audit.command("verify")
@click.argument("path")
@click.option(
    "--expect-count",
    type=POSITION,
    metavar="N",
    help="Fail unless the log still has at least the N entries of a recorded head.",
)
@click.option(
    "--expect-head",
    metavar="HASH",
    help="Fail unless the entry with this hash (a recorded head) is still in the chain.",
)
def audit_verify(path: str, expect_count: int | None, expect_head: str | None) -> None:
    """Recompute the chain of PATH; exit 1 naming the first bad entry if it was altered.

    Prints the head (entry count and last hash). The chain cannot show that its newest
    entries were removed: record the head somewhere else and pass it back later with
    --expect-count and --expect-head. An HMAC-keyed log needs its key, hex-encoded, in
    PEPPERPY_EVENT_AUDIT_KEY; a missing or wrong key is named as such (the log file
    records whether it is keyed, and the key's fingerprint).
    """
    key = _audit_key()
    result = _verify_audit(path, key, expect_count=expect_count, expect_head=expect_head)
    if not result.ok:
        if result.kind in _KEY_PROBLEMS:  # the log records its key setting (AuditLog)
            raise CommandError(f"audit log {path!r} {_KEY_PROBLEMS[result.kind]}")
        bad = result.first_bad_sequence
        where = "" if bad is None else f"entry {bad}: "
        verified = "verified" if bad is None else "before it verified"
        raise CommandError(
            f"audit log {path!r} is NOT intact: {where}{result.reason} "
            f"({result.checked} entries {verified})"
        )
    emit(f"audit log {path!r} is intact: {result.checked} entries verified")
    emit(f"head {result.checked} {result.head}")


@audit.command("show")
@click.argument("path")
def audit_show(path: str) -> None:
    """Print every entry of PATH: SEQUENCE TIME PRINCIPAL ACTION TARGET OUTCOME.

    One line per entry: a field holding a space, a quote or a control character is
    printed as a JSON string, so no value can pass for another line or field. Entries
    are read a page at a time: printing starts at once, whatever the log's size.
    """
    log = _open_audit(path, _audit_key())
    try:
        for entry in log.iter_entries():
            emit(
                f"{entry.sequence} {entry.at.isoformat()} {field(entry.principal)} "
                f"{field(entry.action)} {field(entry.target)} {field(entry.outcome)}"
            )
    finally:
        log.close()
