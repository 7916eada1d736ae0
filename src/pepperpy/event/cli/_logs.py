"""The library's log records, as the command shows them: one line each on stderr.

The library logs what it rides out or cannot raise (a replay's checkpoint that could not
be saved as the replay stopped, a subscription waiting out a store outage, a request the
console could not answer). Without a handler of the command's own, such a record
reached stderr through Python's last-resort handler: the bare message, then a
traceback. Here each is one line, ``pepperpy-event: warning: MESSAGE (Error: reason)``;
``-v`` adds the traceback and INFO records, ``-vv`` (or ``PEPPERPY_EVENT_DEBUG=1``)
DEBUG records too. Importable without click.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from ._errors import scrub, short_paths

__all__ = ["LOGGER", "logging_to_stderr", "more_verbose"]

#: the tree of loggers shown: the library's own (``pepperpy.event.replay``, ...)
LOGGER = "pepperpy.event"
#: what each verbosity shows: -v INFO, -vv DEBUG (WARNING without)
_LEVELS = (logging.WARNING, logging.INFO, logging.DEBUG)


def _one_line(text: str) -> str:
    return " ".join(short_paths(scrub(text)).split())


class _OneLine(logging.Formatter):
    """``pepperpy-event: LEVEL: MESSAGE``; the traceback below it only when verbose."""

    verbose = False

    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        error = record.exc_info[1] if record.exc_info else None
        if error is not None:  # the line says why on its own, traceback or not
            said = _one_line(str(error))
            text += f" ({type(error).__name__}: {said})" if said else f" ({type(error).__name__})"
        line = f"pepperpy-event: {record.levelname.lower()}: {_one_line(text) or '(empty)'}"
        if self.verbose and record.exc_info:
            line += "\n" + scrub(self.formatException(record.exc_info))
        if self.verbose and record.stack_info:
            line += "\n" + scrub(self.formatStack(record.stack_info))
        return line


class _Stderr(logging.Handler):
    """Writes to whatever ``sys.stderr`` is at the time (a test may have replaced it)."""

    def __init__(self) -> None:
        super().__init__()
        self.lines = _OneLine()
        self.formatter = self.lines
        self.verbosity = 0  # an index into _LEVELS
        self.setLevel(_LEVELS[0])  # whatever level a program calling main() gave the root

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
        except Exception:  # a record whose arguments do not fit its message: logging's report
            self.handleError(record)
            return
        try:
            sys.stderr.write(text + "\n")
            sys.stderr.flush()
        except (OSError, ValueError):  # stderr itself gone: nothing is left to say it on
            pass


_installed: list[_Stderr] = []


def more_verbose(steps: int) -> None:
    """Show more (``-v``: tracebacks and INFO records; twice: DEBUG records too)."""
    if not _installed or steps <= 0:
        return
    handler = _installed[-1]
    handler.verbosity = min(handler.verbosity + steps, len(_LEVELS) - 1)
    handler.lines.verbose = True
    handler.setLevel(_LEVELS[handler.verbosity])
    logging.getLogger(LOGGER).setLevel(_LEVELS[handler.verbosity])


@contextmanager
def logging_to_stderr(verbosity: int = 0) -> Iterator[None]:
    """Show the library's log records on stderr, one line each, while the block runs.

    Records still propagate (to a test's capturing handler, say); the logger's level is
    left alone unless ``verbosity`` (or :func:`more_verbose`) asks for INFO or DEBUG,
    and restored after.
    """
    logger = logging.getLogger(LOGGER)
    level = logger.level
    handler = _Stderr()
    logger.addHandler(handler)
    _installed.append(handler)
    try:
        more_verbose(verbosity)
        yield
    finally:
        _installed.remove(handler)
        logger.removeHandler(handler)
        logger.setLevel(level)
