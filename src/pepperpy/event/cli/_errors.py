"""The command's own exceptions and what its errors may not print, importable without click."""

from __future__ import annotations

import errno
import io
import os
import re
import select
import sys

__all__ = [
    "ClosedOutput",
    "CommandError",
    "NotPrinted",
    "OutputClosed",
    "Terminated",
    "discard_stdout",
    "replace_missing_outputs",
    "redact_later",
    "scrub",
    "short_paths",
    "stdout_reader_gone",
]


class CommandError(Exception):
    """Bad input noticed by the command itself; printed as one line, exit status 1."""


class OutputClosed(BaseException):
    """stdout's reader went away (``| head``): the command stops quietly.

    A ``BaseException``, like ``KeyboardInterrupt``: it must not be taken for a handler
    failure by ``EventReplay`` (which isolates ``Exception``), so a replay stops at the
    event that could not be printed and its checkpoint stays before that event.
    """


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, ``timeout``, ``docker stop``, systemd) stopped the command.

    A ``KeyboardInterrupt``, so it is cleaned up after exactly as Ctrl-C is (``bench``
    soft-deletes its streams, ``export`` removes ``FILE.partial``, ``replay --checkpoint``
    saves its checkpoint, ``tail -f`` exits 0); only the exit status differs, 143.
    """


class NotPrinted(BaseException):
    """An event could not be printed (stdout full or failing): the command stops there.

    A ``BaseException`` for the reason :class:`OutputClosed` is one: a replay must stop
    at the event rather than count it failed and go on, so its checkpoint stays before
    it. The message is the one line ``main()`` prints.
    """


class ClosedOutput(io.TextIOBase):
    """The stdout or stderr of a command started without one (``>&-``, ``exec 2>&-``).

    Python then sets ``sys.stdout`` (or ``sys.stderr``) to ``None``; this stands in for
    it, a stream that is a closed pipe: every write raises ``BrokenPipeError``, so the
    command follows the closed pipe's rules (``append`` exits 0 once its event is
    written, a reading command stops with status 141, and lines meant for stderr are
    lost without changing the outcome). Nothing is ever buffered, so ``flush`` has
    nothing to fail on at exit.
    """

    encoding = "utf-8"

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:
        raise BrokenPipeError(errno.EPIPE, f"{self.name} is closed")

    def flush(self) -> None:
        return None


def stdout_reader_gone() -> bool:
    """True if stdout is a pipe whose reader has closed it (poll reports an error).

    Asks without writing, so a command that has nothing to print for a while (``tail
    -f`` on an idle store, ``replay --speed`` in a pause) can notice it too.
    """
    # click wraps stdout (PacifyFlushWrapper) after a broken pipe
    if isinstance(getattr(sys.stdout, "wrapped", sys.stdout), ClosedOutput):
        return True
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(flags & select.POLLERR for _, flags in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll (Windows), no file descriptor
        return False


def replace_missing_outputs() -> None:
    """Give a command started with stdout or stderr closed a :class:`ClosedOutput`."""
    if sys.stdout is None:
        sys.stdout = ClosedOutput("<stdout>")
    if sys.stderr is None:
        sys.stderr = ClosedOutput("<stderr>")


def discard_stdout() -> None:
    """Point stdout at /dev/null after writing to it failed.

    What is still in its buffer could only fail again when Python flushes it at exit
    (the recipe in Python's ``signal`` module documentation, for a closed pipe).
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (AttributeError, OSError, ValueError):  # no file descriptor (a test's stdout)
        pass
    finally:
        os.close(devnull)


#: store URLs seen in this run with a password, and how to print them (for ``scrub``)
_REDACTED: dict[str, str] = {}


def redact_later(url: str, shown: str) -> None:
    """Have :func:`scrub` print ``url`` (which holds a password) as ``shown``."""
    if url != shown:
        _REDACTED[url] = shown


def scrub(text: str) -> str:
    """``text`` with every store URL given to :func:`redact_later` redacted.

    Errors from the library or a driver may quote the URL they were given; ``main()``
    passes every message through here before printing it.
    """
    for url, shown in _REDACTED.items():
        text = text.replace(url, shown)
    return text


#: one step of a path into nested data, as errors write it: ``[0]`` or ``['key']``
_STEP = r"\[(?:-?\d+|'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")\]"
_LONG_PATH = re.compile(f"(?:{_STEP}){{9,}}")


def short_paths(text: str) -> str:
    """``text`` with each path of more than 8 steps cut to its ends.

    A value nested a thousand levels deep is refused at ``data[0][0]...``: the path named
    every level, a line of a kilobyte. It keeps its first 3 and last 2 steps:
    ``data[0][0][0][...245 more...][0][0]``.
    """

    def cut(match: re.Match[str]) -> str:
        steps = re.findall(_STEP, match.group())
        return f"{''.join(steps[:3])}[...{len(steps) - 5} more...]{''.join(steps[-2:])}"

    return _LONG_PATH.sub(cut, text)
