"""A store's log as a JSON Lines file, and back (:func:`export_store`, :func:`import_store`).

The file is a backup of the stored records, as :func:`~._store_copy.copy_store` moves
them: its first line is a header (``{"format": "pepperpy-event-export", "version": 2}``),
then one JSON object per event, in global position order, with every stored column
(``data`` and ``metadata`` in base64: they are stored bytes, ciphertext when the store
encrypts) and whether the event is visible (False: its stream was deleted past it), then
an end line (``{"end": true, "events": N}``), without which a file is cut off. The lines
themselves are :mod:`._export_lines`.
An import is a copy from the file: it resumes after the destination's newest event, and
refuses a destination that does not hold a copy of the file's start. See ``docs/store.md``,
"Moving a store".
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any

from .._errors import ConfigurationError, EncryptionError, StoreError
from ._export_lines import (
    FORMAT,
    CutOff,
    bad_file,
    end_line,
    event_line,
    event_rows,
    header_line,
)
from ._store import EventStore
from ._store_copy import (
    _LOOKUPS,
    DEFAULT_BATCH,
    CopyProgress,
    CopyReport,
    check_batch,
    check_progress,
    hidden_from,
    opened_backend,
)
from ._store_security import refuse_plain, sealed_destination
from .base import Row, StoreBackend, StoredRow

__all__ = ["FORMAT", "export_store", "import_store"]

File = str | os.PathLike[str] | IO[str]
#: where an export may write: a binary stream too (lines UTF-8 encoded)
ExportFile = File | IO[bytes]


async def export_store(
    source: EventStore | str,
    file: ExportFile,
    *,
    batch_size: int = DEFAULT_BATCH,
    progress: Callable[[CopyProgress], object] | None = None,
) -> CopyReport:
    """Write every event of ``source`` (an :class:`EventStore`, or a URL opened and closed
    here), as stored, to ``file`` as JSON Lines, up to its newest event as the export
    starts.

    ``file`` is a path, written whole or not at all (to ``PATH.partial``, renamed when
    complete), or a text or binary stream open for writing (left open; UTF-8 to a
    binary one). A new file gets mode
    0600; one replaced keeps its mode (and owner and group where allowed). A symbolic
    link is followed: its target is written (through ``TARGET.partial``, beside it). A
    path that is not a regular file (a FIFO, a device, ``/dev/fd/N`` of a shell's
    process substitution) is written directly, as a stream: there, a failed export
    leaves what it wrote. A directory is refused (``IsADirectoryError``) before anything is read.
    Deleted streams' events are written too, marked invisible; snapshots and
    checkpoints are not. ``progress`` gets a :class:`CopyProgress` after each batch.
    The file's last line says it is complete (``{"end": true, "events": N}``): one cut
    off (an interrupted copy, ``head -n``, a killed export to a pipe) is refused by
    :func:`import_store`, which reads it back.
    """
    size = check_batch(batch_size)
    report = check_progress(progress)
    started = time.monotonic()
    path = given = _path(file)
    direct = False
    if path is not None:
        path, direct = await asyncio.to_thread(_destination, path)
    async with opened_backend(source, "source", reading=True) as reading:
        if path is not None and given is not None:
            await asyncio.to_thread(_refuse_store_file, reading, path, given)
        target = await reading.head()
        if path is None:
            assert not isinstance(file, (str, os.PathLike))
            stream = _text_stream(file)
        else:
            partial = path if direct else f"{path}.partial"
            opening = open if direct else _open_partial
            stream = await asyncio.to_thread(opening, partial, "w", encoding="utf-8")
        copied, last = 0, None
        try:
            await asyncio.to_thread(stream.write, header_line())
            while target is not None and (last is None or last < target):
                page = await reading.read_stored(0 if last is None else last + 1, size)
                page = [row for row in page if row[0] <= target]
                if not page:
                    break
                await asyncio.to_thread(stream.writelines, [event_line(row) for row in page])
                copied += len(page)
                last = page[-1][0]
                if report is not None:
                    report(CopyProgress(copied, last, target, time.monotonic() - started))
            await asyncio.to_thread(stream.write, end_line(copied))  # written: not cut off
            await asyncio.to_thread(stream.flush)
        except BaseException:
            if path is not None:
                await asyncio.to_thread(_discard, stream, None if direct else partial)
            raise
        if path is not None:
            await asyncio.to_thread(_finish, stream, None if direct else partial, path)
    return CopyReport(copied, None, last, 0, time.monotonic() - started)


def _path(file: object) -> str | None:
    """``file`` as a path, or None for a stream; anything else is refused.

    An empty path is refused too: it named the working directory, so an export read the
    whole store, wrote ``DIR.partial`` beside it and only then failed to rename it over
    the directory, and an import said ``No such file or directory: ''``.
    """
    if isinstance(file, (str, os.PathLike)):
        path = os.fspath(file)
        if not path:
            raise ValueError("file is an empty path: give the path of a file")
        return path
    if hasattr(file, "write") or hasattr(file, "readline"):
        return None
    raise TypeError(f"file must be a path or a stream, got {type(file).__name__}")


class _Encoded:
    """A binary stream (``sys.stdout.buffer``, ``gzip.open(path, "wb")``, a ``BytesIO``)
    written as an export's text stream is: each line UTF-8 encoded. An export to one
    used to read the store and then fail with ``TypeError: a bytes-like object is
    required, not 'str'``; an import reads such a stream already."""

    __slots__ = ("_raw", "_stream")

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._raw = isinstance(stream, io.RawIOBase)  # may write part of what it is given

    def write(self, text: str) -> int:
        data = memoryview(text.encode())
        while data:
            written = self._stream.write(data)
            if not self._raw:
                break
            data = data[written or 0 :]
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        self.write("".join(lines))

    def flush(self) -> None:
        self._stream.flush()


def _text_stream(file: Any) -> Any:
    """``file`` if it takes text, else (a binary stream) an :class:`_Encoded` over it."""
    if isinstance(file, io.TextIOBase):
        return file
    if isinstance(file, io.BufferedIOBase | io.RawIOBase) or "b" in str(getattr(file, "mode", "")):
        return _Encoded(file)
    return file


def _destination(path: str) -> tuple[str, bool]:
    """Where an export to ``path`` writes, and whether directly (not through a partial).

    A regular file (or a new one) is written through ``.partial`` and renamed, beside
    the file a symbolic link points to, so the link stays a link; anything else that is
    not a directory (a FIFO, a device, a pipe's ``/dev/fd/N``) is written directly, as
    renaming over it would replace it with a regular file.
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:  # a new file, or a link to one
        return os.path.realpath(path), False
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(f"{path!r} is a directory: give the path of a file to export to")
    if stat.S_ISREG(mode):
        return os.path.realpath(path), False
    return path, True


def _refuse_store_file(backend: StoreBackend, path: str, given: str) -> None:
    """Refuse an export to the source's own SQLite file (or its ``-wal``, ``-shm`` or
    ``-journal``), before anything is written: renamed over it, the export replaced the
    database (its snapshots and checkpoints lost, the store no longer one), a typo away
    (``export events.db --store sqlite:///events.db``)."""
    from .sqlite import SQLiteBackend

    if not isinstance(backend, SQLiteBackend):
        return
    try:
        target = os.stat(path)
    except OSError:  # a new file
        return
    for suffix in ("", "-wal", "-shm", "-journal"):
        try:
            found = os.stat(backend.path + suffix)
        except (OSError, ValueError):
            continue
        if (found.st_dev, found.st_ino) == (target.st_dev, target.st_ino):
            raise ConfigurationError(
                f"{given!r} is the source store's own SQLite {suffix or 'database'} file: an "
                "export there would overwrite the store; give the path of another file"
            )


def _finish(stream: IO[str], partial: str | None, path: str) -> None:
    """Close the written file; a partial one is synced, then renamed over ``path``."""
    if partial is None:
        stream.close()
        return
    try:
        _keep_mode(stream.fileno(), path)
        os.fsync(stream.fileno())
        stream.close()
        os.replace(partial, path)
    except BaseException:
        _discard(stream, partial)
        raise


def _open_partial(partial: str, mode: str, *, encoding: str) -> IO[str]:
    """``FILE.partial``, open for writing (``mode``), readable by its owner only (0600),
    whatever the umask: the export is every event's data, and a new file keeps that mode.

    A partial file left by an export that was killed is truncated and its mode reset; a
    symbolic link there is refused (``O_NOFOLLOW``) rather than followed.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
    descriptor = os.open(partial, flags, 0o600)
    try:
        if hasattr(os, "fchmod"):  # not on Windows before Python 3.13
            os.fchmod(descriptor, 0o600)
        return open(descriptor, mode, encoding=encoding)
    except BaseException:
        os.close(descriptor)
        raise


def _keep_mode(descriptor: int, path: str) -> None:
    """Give the partial file (``descriptor``) the mode of the file at ``path`` it is
    about to replace, and its owner and group where allowed (root; a group of ours): an
    export over a 0600 backup must not leave a 0644 one. A new file stays 0600."""
    try:
        kept = os.stat(path)
    except FileNotFoundError:
        return
    if hasattr(os, "fchown"):
        if os.geteuid() == 0:
            os.fchown(descriptor, kept.st_uid, kept.st_gid)
        elif kept.st_gid != os.fstat(descriptor).st_gid:
            with contextlib.suppress(PermissionError):  # not a group of ours: ours stays
                os.fchown(descriptor, -1, kept.st_gid)
    if hasattr(os, "fchmod"):  # after fchown, which may clear the set-id bits
        os.fchmod(descriptor, stat.S_IMODE(kept.st_mode))


def _discard(stream: IO[str], partial: str | None) -> None:
    with contextlib.suppress(OSError):
        stream.close()
    if partial is not None:
        with contextlib.suppress(OSError):
            os.remove(partial)


async def import_store(
    destination: EventStore | str,
    file: File,
    *,
    batch_size: int = DEFAULT_BATCH,
    progress: Callable[[CopyProgress], object] | None = None,
) -> CopyReport:
    """Write the events of an :func:`export_store` file to ``destination``, as stored.

    As :func:`~pepperpy.event.copy_store` does from a store: the destination must be
    empty or hold a copy of the start of the file (checked before anything is
    written), the import goes on after its newest event, in batches of ``batch_size``,
    each one transaction. ``file`` is a path or a text stream open for reading. A bad
    line raises :class:`~pepperpy.event.StoreError` naming the line and what is wrong
    with it, and so does a file cut off (in version 2, the format written, its end line is
    missing); a regular file's path is read through once first, so a bad file writes
    nothing at all (a stream is read once: the batches before the bad line's are
    written, the error says how many, and an import run again goes on after them; so is
    a path that is no regular file: a FIFO, a device, ``/dev/fd/N`` of a shell's process
    substitution). A directory is refused (``IsADirectoryError``). A version 1 file has
    no end line: a cut in it cannot be seen.
    """
    size = check_batch(batch_size)
    report = check_progress(progress)
    started = time.monotonic()
    path = _path(file)
    name = str(getattr(file, "name", "<stream>")) if path is None else path
    sealed = sealed_destination(destination)
    # a FIFO, a device, /dev/fd/N (a shell's <(...)): read once, as a stream, opened in a
    # thread (a FIFO's open waits for its writer). A read-through first consumed the
    # pipe, and the import then found it empty, or waited for a writer forever
    if path is not None and await asyncio.to_thread(_not_regular, path):
        handle = await _open_waiting(path)
        with handle:
            return await _import_lines(destination, handle, path, size, report, started, sealed)
    if path is not None:
        stop = threading.Event()  # set when the import is cancelled: the thread stops too
        try:
            await asyncio.to_thread(_check_file, path, stop, sealed)
        finally:
            stop.set()
    with _opened(file, path) as lines:
        return await _import_lines(destination, lines, name, size, report, started, sealed)


async def _import_lines(
    destination: EventStore | str,
    lines: Iterable[str],
    name: str,
    size: int,
    report: Callable[[CopyProgress], object] | None,
    started: float,
    sealed: bool,
) -> CopyReport:
    """:func:`import_store`'s writing of ``lines`` (checked already if from a path)."""
    async with opened_backend(destination, "destination") as writing:
        head = await writing.head()
        checks: dict[int, str] = {}
        if head is not None:
            for row in (await writing.read_stored(0, 1)) + (await writing.read_stored(head, 1)):
                checks[row[0]] = row[3]
        hidden: dict[str, int] = {}  # deletions among the events the destination holds
        batch: list[StoredRow] = []
        after, copied, deletions = head, 0, 0

        async def flush() -> None:
            nonlocal after, copied, deletions, hidden
            for stream, position in hidden_from(batch).items():
                hidden[stream] = max(position, hidden.get(stream, 0))
            rows: list[Row] = [tuple(row[:12]) for row in batch]
            try:
                if sealed:
                    refuse_plain(rows)
                deleting = await _deleting(writing, hidden) if head is not None else 0
                await writing.write_stored(rows, after, hidden)
            except StoreError as exc:  # this batch refused: say what the ones before wrote
                if copied:  # same error, same type and ``written`` (of this batch)
                    exc.args = (f"{exc}; {_written(copied, after, advice=_AGAIN)}",)
                raise
            hidden = {}
            deletions += deleting
            if rows:
                copied += len(rows)
                after = rows[-1][0]
            batch.clear()
            if report is not None:
                report(CopyProgress(copied, after, None, time.monotonic() - started))

        rows = event_rows(lines, name)
        while True:
            try:
                chunk = await asyncio.to_thread(_take, rows, size)
            except CutOff as exc:  # a stream (a path's was read through first)
                raise StoreError(f"{exc}; {_written(copied, after)}") from None
            except StoreError as exc:  # a bad line of a stream: say what was written
                if not copied:
                    raise
                raise StoreError(f"{exc}; {_written(copied, after, fix=True)}") from None
            for number, row in chunk:
                if head is not None and row[0] <= head:
                    _check_held(checks, row, number, name)
                    for stream, position in hidden_from([row]).items():
                        hidden[stream] = max(position, hidden.get(stream, 0))
                    continue
                _check_all_held(checks, name)
                batch.append(row)
                if len(batch) == size:
                    await flush()
            if len(chunk) < size:
                break
        _check_all_held(checks, name)
        if batch or hidden:
            await flush()
    return CopyReport(copied, head, after, deletions, time.monotonic() - started)


async def _deleting(destination: StoreBackend, hidden: dict[str, int]) -> int:
    """How many streams ``write_stored(..., hidden)`` deletes on ``destination``: those
    showing events there below the position their events become visible from (a
    deletion the file carries over to events the destination held already), as
    ``copy_store`` counts them in ``CopyReport.deletions``."""
    names = sorted(hidden)
    count = 0
    for start in range(0, len(names), _LOOKUPS):
        states = await destination.stream_states(names[start : start + _LOOKUPS])
        count += sum(
            1
            for name, state in states.items()
            if state.next_position > state.first_visible < hidden[name]
        )
    return count


async def _open_waiting(path: str) -> IO[str]:
    """``path`` (no regular file) open for reading, opened in a daemon thread of its own.

    A FIFO's open waits until something opens it for writing, which may never happen
    (a writer not started, or gone): cancelled meanwhile (Ctrl-C, SIGTERM), the import
    must not wait for it, as ``asyncio.run`` waits for the threads of ``to_thread``.
    """
    loop = asyncio.get_running_loop()
    opened: asyncio.Future[IO[str]] = loop.create_future()

    def settle(handle: IO[str] | None, error: BaseException | None) -> None:
        if opened.cancelled():
            if handle is not None:
                handle.close()
        elif handle is not None:
            opened.set_result(handle)
        else:
            assert error is not None
            opened.set_exception(error)

    def work() -> None:
        handle, error = None, None
        try:
            handle = open(path, encoding="utf-8", errors="strict")  # noqa: SIM115
        except Exception as exc:
            error = exc
        try:
            loop.call_soon_threadsafe(settle, handle, error)
        except RuntimeError:  # the loop closed meanwhile: nobody takes it
            if handle is not None:
                handle.close()

    threading.Thread(target=work, name="pepperpy-import-open", daemon=True).start()
    return await opened


def _not_regular(path: str) -> bool:
    """Whether ``path`` is there and is no regular file (nor a directory, refused)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False  # the open says why
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(f"{path!r} is a directory: give the path of an export file")
    return not stat.S_ISREG(mode)


def _check_file(path: str, stop: threading.Event, sealed: bool) -> None:
    """Read the whole file at ``path`` once: a bad line is found before anything is written,
    and so is, for a destination with ``encryption=`` (``sealed``), an event not sealed.

    Runs in a thread, which cancelling the import cannot interrupt (and ``asyncio.run``
    waits for before it returns): it stops, between lines, once ``stop`` is set, so
    Ctrl-C does not wait for the rest of a file of gigabytes to be read.
    """
    with open(path, encoding="utf-8", errors="strict") as lines:
        try:
            for number, row in event_rows(lines, path):
                if stop.is_set():
                    return
                if sealed:
                    _check_sealed(row, number, path)
        except EncryptionError:
            raise  # named and worded for the whole file already
        except CutOff as exc:
            raise StoreError(f"{exc}; nothing was written") from None
        except StoreError as exc:
            raise bad_file(exc) from None


#: what to do after an import stopped by a batch refused (not for a bad line of the file)
_AGAIN = "fix what refused this batch and import the file again"


def _written(
    copied: int, after: int | None, *, fix: bool = False, advice: str | None = None
) -> str:
    """What an import from a stream cut off (or, ``fix``, with a bad line; or stopped by
    a batch refused, with ``advice``) had written: the batches before."""
    if not copied:
        return "nothing was written"
    if advice is None:
        advice = "fix the file and import it again" if fix else "import the whole file"
    return (
        f"{copied} event{'' if copied == 1 else 's'} of it {'was' if copied == 1 else 'were'} "
        f"written before (up to global position {after}): {advice} to go on after them (an "
        "import resumes after the destination's newest event)"
    )


def _check_sealed(row: StoredRow, number: int, name: str) -> None:
    """Refuse, as the import's batch would, an event of the file not sealed: found by the
    read through the file, nothing is written (not the batches before its own)."""
    try:
        refuse_plain([row])
    except EncryptionError as exc:
        message = str(exc).replace(
            "nothing of this batch was written", "nothing of the file was written"
        )
        raise EncryptionError(f"{name} line {number}: {message}") from None


@contextlib.contextmanager
def _opened(file: File, path: str | None) -> Iterator[Iterable[str]]:
    if path is None:
        assert not isinstance(file, (str, os.PathLike))
        yield file
        return
    with open(path, encoding="utf-8", errors="strict") as lines:
        yield lines


def _take(rows: Iterator[tuple[int, StoredRow]], size: int) -> list[tuple[int, StoredRow]]:
    taken: list[tuple[int, StoredRow]] = []
    for item in rows:
        taken.append(item)
        if len(taken) == size:
            break
    return taken


def _check_held(checks: dict[int, str], row: StoredRow, number: int, name: str) -> None:
    """An event of the file at or below the destination's head: if it is at one of the
    positions checked, it must be the destination's event there."""
    expected = checks.pop(row[0], None)
    if expected is not None and expected != row[3]:
        raise StoreError(
            f"{name} line {number}: the destination is not a copy of the start of this "
            f"file: its event at global position {row[0]} is {expected!r}, the file's is "
            f"{row[3]!r}; nothing was written (import into an empty store)"
        )


def _check_all_held(checks: dict[int, str], name: str) -> None:
    if checks:
        position = min(checks)
        raise StoreError(
            f"{name}: the destination is not a copy of the start of this file: the file "
            f"has no event at global position {position}, where the destination holds "
            f"{checks[position]!r}; nothing was written (import into an empty store)"
        )
