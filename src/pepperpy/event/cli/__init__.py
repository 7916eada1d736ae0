"""The ``pepperpy-event`` command (also ``python -m pepperpy.event``).

``main()`` turns every expected failure (bad JSON, an unknown store URL, a version
conflict, a missing stream, an unreachable server) into one line on stderr and exit
status 1; usage mistakes get click's usage message and status 2. Ctrl-C prints
``interrupted`` and exits 130; a reader that closes the pipe (``| head``) stops the
command quietly with status 141 (128 + SIGPIPE, what ``yes | head`` reports). Set
``PEPPERPY_EVENT_DEBUG=1`` to see the traceback of an unexpected error.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from .._deps import require
from .._errors import EventError

__all__ = ["main"]

PROGRAM = "pepperpy-event"
INTERRUPTED = 130
BROKEN_PIPE = 141


def _fail(message: str, status: int = 1) -> None:
    text = " ".join(message.split()) or "unknown error"
    sys.stderr.write(f"{PROGRAM}: error: {text}\n")
    sys.stderr.flush()
    raise SystemExit(status)


def _interrupted() -> None:
    sys.stderr.write("interrupted\n")
    sys.stderr.flush()
    raise SystemExit(INTERRUPTED)


def _pipe_closed() -> None:
    """Exit quietly after stdout's reader went away.

    stdout is pointed at /dev/null first, so flushing what is left in its buffer at exit
    cannot raise again (the recipe in Python's ``signal`` module documentation).
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)
    raise SystemExit(BROKEN_PIPE)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``)."""
    debug = os.environ.get("PEPPERPY_EVENT_DEBUG", "") not in ("", "0")
    try:
        require("click", extra="cli", feature="the pepperpy-event command")
        import click

        from ._app import CommandError, OutputClosed, app

        args = list(sys.argv[1:] if argv is None else argv)
        try:
            # not standalone: click would answer Ctrl-C with "Aborted!" and status 1
            status = app.main(args=args, prog_name=PROGRAM, standalone_mode=False)
        except click.Abort:
            _interrupted()
        except click.ClickException as exc:
            exc.show()
            raise SystemExit(exc.exit_code) from None
        except OutputClosed:
            _pipe_closed()
        if isinstance(status, int) and status != 0:
            raise SystemExit(status)
    except KeyboardInterrupt:
        _interrupted()
    except SystemExit:
        raise
    except (CommandError, EventError, ValueError, OSError) as exc:
        if debug:
            raise
        _fail(str(exc) or type(exc).__name__)
    except Exception as exc:
        if debug:
            raise
        _fail(
            f"unexpected {type(exc).__name__}: {exc} (PEPPERPY_EVENT_DEBUG=1 shows the traceback)"
        )
