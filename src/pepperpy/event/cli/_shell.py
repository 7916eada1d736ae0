"""What every subcommand shares: its --store, its options, how it prints and how it runs.

The store is the subcommand's ``--store``, else the group's, else
``PEPPERPY_EVENT_STORE``, else :data:`DEFAULT_STORE`. Events go to stdout (:func:`emit`),
everything else to stderr (:func:`note`). Each subcommand runs its coroutine on an event
loop of its own (:func:`run`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import threading
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, NoReturn, TypeVar

import click

from .. import _json
from .._checkpoints import sqlite_path
from .._errors import ConfigurationError, PatternError, SerializationError, StoreError
from .._patterns import parse_pattern, parse_topic
from .._replay import parse_time
from ..store import ANY, NO_STREAM, STREAM_EXISTS, EventStore
from ..store.base import ExpectedVersion
from ._errors import (
    ClosedOutput,
    CommandError,
    OutputClosed,
    Terminated,
    discard_stdout,
    stdout_reader_gone,
)
from ._logs import more_verbose
from ._output import escaped
from ._threads import LeavingPool
from ._urls import normalized, shown

__all__ = [
    "DEFAULT_STORE",
    "LARGEST",
    "POSITION",
    "checked_name",
    "confirm",
    "emit",
    "filter_options",
    "json_option",
    "not_utf8",
    "note",
    "json_argument",
    "open_store",
    "waited_for",
    "parse_expected",
    "parse_json",
    "patterns",
    "refuse_plain_into_encrypted",
    "run",
    "store_option",
    "time_window",
    "verbose_everywhere",
    "why_not_printed",
]

DEFAULT_STORE = "sqlite:///events.db"
LARGEST = 2**63 - 1  # positions and counts: the store's largest position (signed 64-bit)
POSITION = click.IntRange(0, LARGEST)
#: how often a command that may print nothing for a while asks whether stdout's reader left
READER_CHECK = 0.25
T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


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
        metavar="URL",
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


def _verbose(context: click.Context, parameter: click.Parameter, count: int) -> None:
    more_verbose(count)


def verbose_everywhere(command: click.Command) -> None:
    """Give ``command`` and every subcommand under it ``-v/--verbose`` (``_logs``).

    On each, as with ``--store``: ``pepperpy-event -v tail -f`` and ``pepperpy-event tail
    -f -v`` both work, and the counts add up.
    """
    command.params.append(
        click.Option(
            ["-v", "--verbose"],
            count=True,
            expose_value=False,
            callback=_verbose,
            help="Show the tracebacks of logged failures, and INFO messages (-vv: DEBUG too).",
        )
    )
    if isinstance(command, click.Group):
        for subcommand in command.commands.values():
            verbose_everywhere(subcommand)


def emit(line: str) -> None:
    """Print one line to stdout at once (a pipe or a test reads it while we run).

    A character stdout's encoding cannot hold is printed as a JSON escape (``\\u6ce8``,
    see :func:`~._output.escaped`) rather than fail the command after its work is done.
    Raises :class:`OutputClosed` when the reader has closed the pipe, and ``OSError``
    when stdout cannot be written (a full disk).
    """
    try:
        try:
            sys.stdout.write(line + "\n")
        except UnicodeEncodeError:  # raised before anything is written: the line is whole
            sys.stdout.write(escaped(line, getattr(sys.stdout, "encoding", None)) + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        raise OutputClosed from None


def confirm(line: str) -> None:
    """Print what was done; a stdout that fails now says so (on stderr) but cannot undo it.

    The exit status stays 0: a script that saw 1 would retry a write that was made, and
    make it twice.
    """
    try:
        emit(line)
    except (OutputClosed, OSError) as exc:
        discard_stdout()
        reason = why_not_printed(exc)
        if isinstance(exc, OutputClosed):
            closed = isinstance(sys.stdout, ClosedOutput)
            reason = (
                "the command was started with stdout closed" if closed else "its reader closed it"
            )
        note(f"pepperpy-event: warning: {line}, but stdout could not print this ({reason})")


def why_not_printed(exc: BaseException) -> str:
    """Why printing failed, in a few words (``No space left on device``)."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return f"{type(exc).__name__}: {exc}"


def note(text: str) -> None:
    """A remark for the person at the terminal (stderr).

    A stderr that cannot take it (closed, its reader gone, a full disk) loses the remark
    but changes nothing else: the work is done, and its exit status says so.
    """
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.write(text + "\n")
        sys.stderr.flush()


def run(
    work: Callable[[], Awaitable[T]],
    *,
    on_signal: Callable[[int], bool] | None = None,
    watch_stdout: bool = False,
) -> T:
    """Run one subcommand's coroutine on a fresh event loop; Ctrl-C raises KeyboardInterrupt.

    SIGTERM cancels the work the same way, so the same cleanup runs, and raises
    :class:`Terminated` (a ``KeyboardInterrupt``: exit status 143 instead of 130).

    Ctrl-C cancels the work from a loop callback (``loop.add_signal_handler``), not from
    ``asyncio.run``'s own SIGINT handler: that one cancels the task from inside the signal
    handler, which can land in the middle of another callback (such as the one handing a
    thread's result to a future the task awaits) and make it fail with a traceback.

    With ``on_signal`` (``serve``), SIGINT and SIGTERM go to it first: when it returns
    True it has taken care of the signal (a graceful stop) and the work runs on.

    With ``watch_stdout`` (``tail -f``, ``replay --speed``: commands that may print
    nothing for a long while), stdout is checked every :data:`READER_CHECK` seconds
    without writing to it: once its reader has gone, the work is cancelled (its cleanup
    runs, as for Ctrl-C) and :class:`OutputClosed` raised, exit status 141, as GNU
    ``tail -f`` does. Otherwise a closed pipe is noticed only at the next line printed.

    Blocking work goes to threads (``asyncio.to_thread``) that a stopped command does not
    wait for (:class:`LeavingPool`): ``import -`` blocked reading an idle pipe stops at
    Ctrl-C, as every other command does.
    """

    async def main() -> T:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(threads)
        task = asyncio.current_task()
        interrupted: int | None = None  # the signal that cancelled the work
        reader_gone = False  # the watcher cancelled the work: stdout's reader left

        slow = False  # the cleanup after a signal is taking long: the user was told

        def interrupt(signum: int) -> None:
            nonlocal interrupted
            if on_signal is not None and on_signal(signum):
                return
            if interrupted is None:
                interrupted = signum
                loop.call_later(SLOW_STOP, stopping_slowly)
            elif slow and signum == signal.SIGINT:
                quit_now()
            if task is not None:
                task.cancel()

        def stopping_slowly() -> None:
            nonlocal slow
            if task is not None and not task.done():
                slow = True
                note(
                    "pepperpy-event: still stopping: waiting for the cleanup (a connection "
                    "being opened or closed, a checkpoint being saved); press Ctrl-C again "
                    "to quit at once without it"
                )

        signals = [signal.SIGINT, signal.SIGTERM]
        installed: list[int] = []
        if threading.current_thread() is threading.main_thread():
            for signum in signals:
                with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                    loop.add_signal_handler(signum, interrupt, signum)
                    installed.append(signum)

        async def watch() -> None:
            nonlocal reader_gone
            while not stdout_reader_gone():  # noqa: ASYNC110 - poll has no callback
                await asyncio.sleep(READER_CHECK)
            if interrupted is None and task is not None:
                reader_gone = True
                task.cancel()

        watcher = asyncio.create_task(watch()) if watch_stdout else None
        try:
            return await work()
        except asyncio.CancelledError:
            if interrupted is not None or reader_gone:
                threads.leave()  # the cleanup has run: a thread still blocked is left
            if interrupted == signal.SIGTERM:
                raise Terminated from None
            if interrupted is not None:
                raise KeyboardInterrupt from None
            if reader_gone:
                raise OutputClosed from None
            raise
        finally:
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
            for handled in installed:
                loop.remove_signal_handler(handled)

    threads = LeavingPool()
    return asyncio.run(main())


#: seconds after Ctrl-C (or SIGTERM) before a command still stopping says so, and a
#: second Ctrl-C quits at once
SLOW_STOP = 1.0


def quit_now() -> NoReturn:
    """End the process now, at a second Ctrl-C while the cleanup of the first is slow.

    A cleanup can wait for long: closing a PostgreSQL store waits for a connection being
    opened to a server that does not answer (up to its ``connect_timeout``, 10 s by
    default), and the Ctrl-C pressed meanwhile did nothing. Nothing written is lost: a
    write not committed is rolled back, as after a crash; what the cleanup would have
    saved (``replay --checkpoint``'s position, ``bench``'s deletions) is not.
    """
    with contextlib.suppress(OSError, ValueError):
        sys.stdout.flush()
    note("interrupted again: quitting without the cleanup")
    os._exit(128 + signal.SIGINT)


def patterns(values: tuple[str, ...], option: str) -> list[str] | None:
    """``--streams``/``--types`` values (``option``), each checked now.

    Checked before the store is read: ``tail`` on an empty store or with ``-n 0`` reads
    nothing that would refuse a bad pattern, and exited 0 in silence. The error names
    the option (``--types '' is empty: ...``): the library's ``invalid pattern ''`` left
    the user to guess which of the values typed it was.
    """
    for value in values:
        checked_name(value, option, "pattern")
    return list(values) if values else None


#: what a name the user types is, one that would do, and whether it may hold wildcards
_NAMES = {
    "stream": ("a stream name", "orders.42", "names"),
    "type": ("an event type", "order.placed", "names"),
    "topic": ("a topic", "orders.placed", "topics"),
    "pattern": ("a topic pattern", "orders.#", "topics"),
}


def checked_name(text: str, what: str, kind: Literal["stream", "type", "topic", "pattern"]) -> str:
    """``text``, a stream name, event type, topic or topic pattern (``kind``) typed as
    ``what``, checked now.

    ``what`` is what the help calls it (``STREAM``, ``TYPE``, ``--stream``). The store
    checks names too, but calls a bad one an invalid *pattern* and names no argument (a
    bad TYPE was even reported as bad data).
    """
    noun, example, plural = _NAMES[kind]
    try:
        (parse_pattern if kind == "pattern" else parse_topic)(text)
    except PatternError as exc:
        if not text:
            raise CommandError(f"{what} is empty: give {noun}, such as {example}") from None
        shown = text if len(text) <= 120 else f"{text[:60]}...{text[-20:]}"
        raise CommandError(
            f"{what} {shown!r} is not {noun}: {exc.reason} (at character {exc.position}); "
            f"{plural} are dot-separated tokens, such as {example}"
        ) from None
    return text


@contextlib.asynccontextmanager
async def open_store(
    url: str,
    *,
    reading: bool = False,
    must_exist: bool = False,
    given: str | None = None,
    wait: bool = False,
) -> AsyncIterator[EventStore]:
    """The store at ``url``, open for the length of the block.

    Reading commands (``reading``) never make a store of a file or a database: an
    existing SQLite file must already be an event store (an empty file, or another
    application's database, is refused and left as it is), and so must a PostgreSQL
    database (or ``?schema=``), which gets no tables; checked before anything else opens
    it (a replay's checkpoint table). With ``must_exist`` a missing SQLite file is
    refused too (without it, ``tail -f`` and ``serve`` make it, to follow). A bad URL (a
    port out of range, say) is refused by the store itself, before it connects.
    ``given`` names where ``url`` came from in errors (``copy``'s ``SOURCE_URL``); by
    default the subcommand's ``--store``, its environment variable or the default.

    With ``wait`` (``tail -f``, ``serve``: commands that follow the store), a PostgreSQL
    database that holds no store yet is waited on, with a note on stderr, until a writer
    creates the store there (see :func:`_until_created`), rather than refused.
    """
    path = None
    if url.partition("://")[0].lower() == "sqlite":
        path = sqlite_path(url)
        origin = given or _store_origin()
        if must_exist and not path.exists():
            advice = ", or pass --store" if origin != "--store" and not given else ""
            raise CommandError(
                f"no event store at {str(path)!r}{_relative_hint(path)} (from {origin}; run "
                f"'pepperpy-event demo' or 'pepperpy-event append' first{advice})"
            )
        if not path.parent.exists():
            raise CommandError(
                f"directory {str(path.parent)!r} does not exist (from {origin}"
                f"{_relative_hint(path)})"
            )
    async with EventStore(url) as store:
        if reading and _may_not_create(store, path):
            # refuses a file or database without a store
            if not wait:
                await store.read_all(0, limit=1)
            elif await _until_created(store):
                _WAITED.add(store)
        yield store


#: the stores :func:`open_store` waited on until a writer created them
_WAITED: weakref.WeakSet[EventStore] = weakref.WeakSet()


def waited_for(store: EventStore) -> bool:
    """Whether :func:`open_store` found no store at first and waited for a writer to
    create it: a follower then follows from the first event (whatever was written
    before it looked again is news to it too), not from the last ``-n``."""
    return store in _WAITED


#: seconds between two looks for a PostgreSQL store that a follower waits to be created
STORE_WAIT = 1.0

#: how the store refuses a PostgreSQL database (or schema) that holds no store yet
_NO_STORE = "PostgreSQL: no event store in database "


async def _until_created(store: EventStore) -> bool:
    """Return once ``store`` (opened with ``create=False``) holds a store; True if
    there was none at first.

    On PostgreSQL a follower started before the first writer (``tail -f``, ``serve``)
    finds no store in the database: it waits for one, looking every
    :data:`STORE_WAIT` seconds and creating nothing, and says so once on stderr (the
    database given by mistake shows there, as it waits for ever). Ctrl-C stops it as it
    stops the follower. Any other refusal (not a store, a newer schema, no connection)
    is raised at once.
    """
    waiting = False
    while True:
        try:
            await store.read_all(0, limit=1)
        except StoreError as exc:
            reason = str(exc)
            if not reason.startswith(_NO_STORE):
                raise
            if not waiting:
                waiting = True
                where = reason.partition(" table)")[0].removeprefix("PostgreSQL: ")
                note(
                    f"pepperpy-event: waiting: {where} table) yet; nothing is made there, "
                    "and the events are followed once a writer creates the store (Ctrl-C "
                    "to stop)"
                )
            await asyncio.sleep(STORE_WAIT)
        else:
            return waiting


def _may_not_create(store: EventStore, path: Path | None) -> bool:
    """Set a reading command's store not to create itself: an existing SQLite file, or
    any PostgreSQL database (another application's, given by mistake, must not get the
    store's tables; there is no missing file to tell a store yet to come by). True if
    set, and the store must then be checked."""
    from ..store.postgres import PostgresBackend
    from ..store.sqlite import SQLiteBackend

    backend = store.backend
    if isinstance(backend, PostgresBackend) or (
        isinstance(backend, SQLiteBackend) and path is not None and path.exists()
    ):
        backend.create = False
        return True
    return False


def _store_origin() -> str:
    """Where the running subcommand's store URL came from, as an error names it: an error
    that said ``from --store`` for a URL set in the environment sent the user looking
    for an option they never typed."""
    context = click.get_current_context(silent=True)
    if context is None or context.find_object(str) is not None:  # the group's --store
        return "--store"
    try:
        source = context.get_parameter_source("store")
    except KeyError:  # no --store on this command
        return "--store"
    if source is click.core.ParameterSource.ENVIRONMENT:
        return "PEPPERPY_EVENT_STORE"
    if source in (click.core.ParameterSource.DEFAULT, click.core.ParameterSource.DEFAULT_MAP):
        return "the default store"
    return "--store"


def _relative_hint(path: Path) -> str:
    """For a relative SQLite path: where it points, and the URL of the absolute path.

    ``sqlite:///tmp/e.db`` (three slashes) is ``tmp/e.db`` in the working directory, the
    classic slip for ``sqlite:////tmp/e.db``; an error that showed only ``'tmp/e.db'``
    left the user to work that out.
    """
    if path.is_absolute():
        return ""
    if len(path.parts) == 1:  # events.db: no directory a slash could have made absolute
        return f", relative to the working directory {str(Path.cwd())!r}"
    return (
        f", relative to the working directory {str(Path.cwd())!r}; for the absolute path "
        f"use sqlite:////{path.as_posix()}"
    )


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


def time_window(start: str | None, end: str | None) -> tuple[datetime | None, datetime | None]:
    """``--from`` and ``--to``, parsed and in order (the library would say start_time)."""
    try:
        window = parse_time(start, "--from"), parse_time(end, "--to")
    except ConfigurationError as exc:
        raise CommandError(str(exc)) from None
    if window[0] is not None and window[1] is not None and window[0] > window[1]:
        raise CommandError(  # as the user typed them
            f"--from {start!r} is after --to {end!r}: nothing could be replayed"
        )
    return window


def json_argument(text: str, what: str = "JSON") -> Any:
    """A JSON argument (``append``'s data and ``--metadata``, ``validate``'s, ``bus
    publish``'s): the text itself, ``@FILE`` (a file's content) or ``@-`` (stdin), so that
    data too long for a command line, or made by another program (``jq ... |
    pepperpy-event append S T @-``), need not go through the shell's quoting. ``what``
    names the argument in errors."""
    if not text.startswith("@"):  # JSON never starts with "@"
        return parse_json(text, "JSON data" if what == "JSON" else what)
    source = text[1:]
    if not source:  # read as the path '', it was "cannot read '': Is a directory"
        raise CommandError(f"{what} '@' names no file: give @FILE, or @- to read stdin")
    try:
        if source == "-":
            if sys.stdin is None:  # started with stdin closed (<&-)
                raise CommandError(f"{what} @-: stdin is closed: give the JSON, or @FILE")
            raw = sys.stdin.read()
        else:
            raw = Path(source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = why_not_printed(exc) if isinstance(exc, OSError) else str(exc)
        raise CommandError(f"{what} {text}: cannot read {source!r}: {reason}") from None
    return parse_json(raw, f"{what} {text}")


def parse_json(text: str, what: str) -> Any:
    """``text`` (an argument) as JSON; ``what`` names the argument in errors."""
    not_utf8(text, what)
    try:
        return _json.loads(text)
    except SerializationError as exc:
        raise CommandError(f"{what}: {exc}") from exc


def not_utf8(text: str, what: str) -> None:
    """Refuse ``text`` holding what UTF-8 cannot carry, naming the byte and where.

    A command-line argument's bytes that are not UTF-8 reach Python as lone surrogates
    (``\\udcff`` for byte 0xff); the JSON parser then said ``str is not valid UTF-8:
    surrogates not allowed: line 1 column 1 (char 0)``, wherever the byte was.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        char = text[exc.start]
        if "\udc80" <= char <= "\udcff":  # a byte that was not UTF-8 (surrogateescape)
            raise CommandError(
                f"{what}: not UTF-8 text: byte 0x{ord(char) - 0xDC00:02x} at character {exc.start}"
            ) from None
        raise CommandError(
            f"{what}: lone surrogate {char!r} at character {exc.start} is not valid UTF-8"
        ) from None


async def refuse_plain_into_encrypted(events: EventStore, stream: str, store: str) -> None:
    """Refuse to append to a store whose data is encrypted (written with ``encryption=``):
    ``append``, and ``demo`` before it writes.

    The command holds no key, so its event would be stored as plain data, which the
    application's encrypted store refuses to read (``EncryptionError: ... is not
    encrypted``): its reads of that stream would fail from then on. The first and newest
    events of the stream and of the log tell (an encrypted store seals every event).
    """
    from ..security._envelope import is_envelope

    ends = [event async for event in events.get_stream(stream, limit=1)]
    ends += [event async for event in events.get_stream(stream, backwards=True, limit=1)]
    ends += [event async for event in events.read_all(0, limit=1)]
    head = await events.head()
    if head is not None:
        ends += [event async for event in events.read_all(head, backwards=True, limit=1)]
    if any(is_envelope(event.data) for event in ends):
        raise CommandError(
            f"{shown(store)} holds encrypted events (written with encryption=): the "
            "command holds no key, so it would append plain data, which the encrypted store "
            "refuses to read; append from the application, with its encryption"
        )
