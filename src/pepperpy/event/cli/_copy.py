"""``pepperpy-event export``, ``import`` and ``copy``: move a store's log, as stored.

``export`` writes the store's events to a JSON Lines file (or stdout), ``import`` reads
one back into a store, ``copy`` copies one store into another (SQLite to PostgreSQL,
say). Every event keeps its global position, so checkpoints hold on the copy; a copy or
import run again goes on after the destination's newest event (see ``docs/store.md``,
"Moving a store"). Summaries and the progress bar go to stderr.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, BinaryIO, TextIO, cast

import click

from ..store._store_copy import DEFAULT_BATCH, MAX_BATCH, CopyProgress, CopyReport, copy_store
from ..store._store_export import export_store, import_store
from ._errors import CommandError, OutputClosed
from ._shell import note, open_store, run, store_option, why_not_printed
from ._urls import normalized, shown

__all__ = ["COMMANDS", "copy", "export", "import_"]


def _batch_option(
    text: str = "Events written per transaction.",
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """``--batch-size``, described as the command uses it (``text``)."""

    def option(function: Callable[..., None]) -> Callable[..., None]:
        return click.option(
            "--batch-size",
            type=click.IntRange(1, MAX_BATCH),
            default=DEFAULT_BATCH,
            show_default=True,
            help=text,
        )(function)

    return option


@contextmanager
def _progress(label: str) -> Iterator[Callable[[CopyProgress], None]]:
    """A rich progress bar on stderr when it is a terminal (global positions done of the
    source's newest); a no-op callback otherwise."""
    if not sys.stderr.isatty():
        yield lambda progress: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (
        TextColumn(label),
        BarColumn(),
        TextColumn("{task.fields[copied]} events"),
        TimeElapsedColumn(),
    )
    with Progress(
        *columns,
        console=Console(stderr=True),
        transient=True,
        redirect_stdout=False,
        redirect_stderr=False,
    ) as bar:
        task = bar.add_task(label, total=None, copied=0)

        def advance(progress: CopyProgress) -> None:
            total = None if progress.head is None else progress.head + 1
            done = 0 if progress.position is None else progress.position + 1
            bar.update(task, completed=done, total=total, copied=progress.copied)

        yield advance


class _Utf8Out:
    """stdout for ``export -``, written in UTF-8 whatever the locale's encoding: an
    export file is UTF-8 (as a FILE is written). Through ``sys.stdout`` a stream named
    ``café.1`` came out in the locale's encoding (Latin-1, cp1252), a file ``import``
    then refused as not UTF-8."""

    name = "<stdout>"

    def __init__(self, binary: BinaryIO) -> None:
        self._binary = binary

    @classmethod
    def of(cls, stream: TextIO) -> IO[str]:
        binary = getattr(stream, "buffer", None)
        if binary is None:  # replaced by a text-only stream (a test's): as it is
            return stream
        stream.flush()
        return cast(IO[str], cls(binary))  # what export_store writes with, it has

    def write(self, text: str) -> int:
        self._binary.write(text.encode("utf-8"))
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        self._binary.write("".join(lines).encode("utf-8"))

    def flush(self) -> None:
        self._binary.flush()


class _Utf8In:
    """An export read from a pipe (stdin, a FIFO, ``/dev/fd/N``), as UTF-8 whatever the
    locale's encoding (bytes that are not UTF-8 refused, naming the line). Through
    ``sys.stdin`` in a Latin-1 or cp1252 locale, an export's ``café.1`` was read as
    ``cafÃ©.1`` and stored so, silently."""

    def __init__(self, binary: BinaryIO, name: str = "<stdin>") -> None:
        self._binary = binary
        self.name = name

    def readline(self) -> str:
        return self._binary.readline().decode("utf-8")

    def __iter__(self) -> Iterator[str]:
        for line in self._binary:
            yield line.decode("utf-8")


def _stdin() -> BinaryIO | None:
    """stdin's bytes through a descriptor of their own (None: stdin has none, as in a
    test's replaced stream: read it as it is).

    Stopped (Ctrl-C, SIGTERM) while a thread waits in a read of an idle pipe, the
    command leaves that thread (``_threads``). Had it read ``sys.stdin.buffer``, the
    interpreter's exit, closing ``sys.stdin``, would wait for the lock that read holds
    and abort (``Fatal Python error: _enter_buffered_busy``); only that thread holds
    this reader.
    """
    try:
        return open(os.dup(sys.stdin.fileno()), "rb")  # noqa: SIM115 - _read_through closes it
    except (OSError, ValueError, AttributeError):  # io.UnsupportedOperation included
        return None


@contextmanager
def _read_through(binary: BinaryIO) -> Iterator[None]:
    """Close ``binary`` once the import has ended, but not once stopped: a thread may
    still wait in a read of it, holding its lock (closing would wait for that read)."""
    try:
        yield
    except (asyncio.CancelledError, KeyboardInterrupt, OutputClosed):
        raise
    except BaseException:
        binary.close()
        raise
    binary.close()


async def _pipe(path: Path) -> BinaryIO:
    """``path``, a FIFO or ``/dev/fd/N``, open for reading. A FIFO's open waits for a
    writer, which may never come: the thread doing it is left if the command is stopped."""
    descriptor = await asyncio.to_thread(os.open, path, os.O_RDONLY)
    return os.fdopen(descriptor, "rb")


def _summary(verb: str, report: CopyReport, where: str) -> str:
    line = f"{verb} {report.copied} event{'' if report.copied == 1 else 's'} {where}"
    if report.resumed_after is not None:
        line += f" (it held those up to global position {report.resumed_after} already)"
    if report.last_position is not None:
        line += f"; its newest event is at global position {report.last_position}"
    if report.deletions:
        line += f"; {report.deletions} stream deletion(s) carried over"
    return line


@click.command("export")
@click.argument("file", metavar="FILE|-")
@store_option
@_batch_option("Events read from the store per page.")
def export(file: str, store: str, batch_size: int) -> None:
    """Write every stored event to FILE (- for stdout) as JSON Lines, for a backup.

    Events are written as stored, with their global positions (encrypted data stays
    encrypted); deleted streams' events are kept, marked invisible. A FILE is written
    whole or not at all (a FIFO or a device is written as a stream); its last line
    marks it complete. Read it back with 'pepperpy-event import'.
    """
    target = None if file == "-" else Path(file)
    if target is not None and not target.parent.exists():
        raise CommandError(f"directory {str(target.parent)!r} does not exist (from FILE)")
    if target is not None and target.is_dir():
        raise CommandError(f"FILE {file!r} is a directory: give the path of a file to export to")

    async def work() -> CopyReport:
        async with open_store(store, reading=True, must_exist=True) as events:
            with _progress("exporting") as advance:
                return await export_store(
                    events,
                    _Utf8Out.of(sys.stdout) if target is None else target,
                    batch_size=batch_size,
                    progress=advance,
                )

    try:
        report = run(work)
    except OSError as exc:
        if target is None or isinstance(exc, ConnectionError):
            raise
        raise CommandError(f"could not export to {file!r}: {why_not_printed(exc)}") from exc
    note(_summary("exported", report, f"to {'stdout' if target is None else str(target)}"))


@click.command("import")
@click.argument("file", metavar="FILE|-")
@store_option
@_batch_option()
def import_(file: str, store: str, batch_size: int) -> None:
    """Write the events of an export FILE (- for stdin) to the store, as stored.

    The store must be empty, or hold a copy of the start of FILE (an import run again
    goes on after its newest event). A bad line is named, with what is wrong with it,
    and a FILE cut off (without its end line) is refused; a FILE is checked whole
    before anything is written (a FIFO or /dev/fd/N, as from <(zcat FILE.gz), is read
    once, as stdin is).
    """
    source = None if file == "-" else Path(file)
    if source is not None and not source.exists():
        raise CommandError(f"no export file at {str(source)!r}")
    if source is not None and source.is_dir():
        raise CommandError(f"FILE {file!r} is a directory: give the path of an export file")
    if source is None and sys.stdin is None:  # started with stdin closed (<&-)
        raise CommandError("stdin is closed: give an export FILE, or pipe one into import -")

    pipe = source is not None and not stat.S_ISREG(source.stat().st_mode)

    async def work() -> CopyReport:
        async with open_store(store) as events:
            binary = _stdin() if source is None else await _pipe(source) if pipe else None
            lines: Path | IO[str] = sys.stdin if source is None else source
            if binary is not None:
                lines = cast(IO[str], _Utf8In(binary, "<stdin>" if source is None else file))
            with _progress("importing") as advance, contextlib.ExitStack() as stack:
                if binary is not None:
                    stack.enter_context(_read_through(binary))
                return await import_store(events, lines, batch_size=batch_size, progress=advance)

    report = run(work)
    note(_summary("imported", report, f"into {shown(store)}"))


@click.command("copy")
@click.argument("source_url")
@click.argument("destination_url")
@_batch_option()
def copy(source_url: str, destination_url: str, batch_size: int) -> None:
    """Copy the events of the store at SOURCE_URL to the store at DESTINATION_URL.

    As stored: global positions (a checkpoint taken on the source holds on the copy),
    ids, times and data (encrypted data stays encrypted) are kept, and deleted streams
    stay deleted; checkpoints and snapshots are not copied. The destination must be
    empty or an earlier copy of the source: a copy run again goes on after its newest
    event. Nothing else may write to the destination meanwhile.
    """
    source = normalized(source_url)
    destination = normalized(destination_url)
    if source == destination:
        raise CommandError("SOURCE_URL and DESTINATION_URL are the same store")

    async def work() -> CopyReport:
        async with (
            open_store(source, reading=True, must_exist=True, given="SOURCE_URL") as reading,
            open_store(destination, given="DESTINATION_URL") as writing,
        ):
            with _progress("copying") as advance:
                return await copy_store(reading, writing, batch_size=batch_size, progress=advance)

    report = run(work)
    note(_summary("copied", report, f"into {shown(destination)}"))


#: the commands this module adds to ``pepperpy-event``
COMMANDS = (export, import_, copy)
