"""The ``pepperpy-event`` command (also ``python -m pepperpy.event``).

``main()`` turns every expected failure (bad JSON, an unknown store URL, a version
conflict, a missing stream, an unreachable server) into one line on stderr and exit
status 1; usage mistakes get click's usage message and status 2. Ctrl-C prints
``interrupted`` and exits 130 (SIGTERM, after the same cleanup: ``terminated``, 143);
a reader that closes the pipe (``| head``) stops the command quietly with status 141
(128 + SIGPIPE, what ``yes | head`` reports). A package that cannot be imported is
one line too: a missing extra names its ``pip install``. Set
``PEPPERPY_EVENT_DEBUG=1`` to see the traceback of an unexpected error.

What the library logs (a checkpoint it could not save, a store outage a subscription
waits out) is one line on stderr too, ``pepperpy-event: warning: ...`` (``_logs``);
``-v`` (on the group or any subcommand) adds tracebacks and INFO records.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Sequence

from .._deps import require
from .._errors import EventError
from ._errors import (
    CommandError,
    NotPrinted,
    OutputClosed,
    Terminated,
    discard_stdout,
    replace_missing_outputs,
    scrub,
    short_paths,
)
from ._errors import stdout_reader_gone as _stdout_reader_gone
from ._logs import logging_to_stderr

__all__ = ["main"]

PROGRAM = "pepperpy-event"
INTERRUPTED = 130
TERMINATED = 143  # 128 + SIGTERM
BROKEN_PIPE = 141
#: extras that only gather others (or serve development), never the one to suggest
_UMBRELLA_EXTRAS = frozenset({"all", "dev", "bench"})


def _say(line: str) -> None:
    """``line`` on stderr, if stderr can take it: the exit status says the rest."""
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.write(line + "\n")
        sys.stderr.flush()


def _fail(message: str, status: int = 1) -> None:
    text = " ".join(short_paths(scrub(message)).split()) or "unknown error"
    _say(f"{PROGRAM}: error: {text}")
    raise SystemExit(status)


def _interrupted() -> None:
    _say("interrupted")
    raise SystemExit(INTERRUPTED)


def _terminated() -> None:
    _say("terminated")
    raise SystemExit(TERMINATED)


def _pipe_closed() -> None:
    """Exit quietly after stdout's reader went away."""
    discard_stdout()
    raise SystemExit(BROKEN_PIPE)


def _extra_for(module: str) -> str | None:
    """The extra of this distribution that installs ``module``, if one does."""
    from importlib import metadata  # only on this rare path: it costs start-up time

    try:
        requirements = metadata.requires("pepperpy-event") or []
    except metadata.PackageNotFoundError:
        return None
    wanted = module.lower()
    for requirement in requirements:
        name = re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0]
        extra = re.search(r"extra\s*==\s*['\"]([^'\"]+)['\"]", requirement)
        if extra is None or extra.group(1) in _UMBRELLA_EXTRAS:
            continue
        distribution = re.sub(r"[-_.]+", "_", name).lower()
        if distribution == wanted or distribution.startswith(wanted + "_"):
            return extra.group(1)
    return None


def _import_failure(exc: ImportError) -> str:
    """One line for an import that failed: a missing extra names its pip install."""
    missing = (exc.name or "").split(".")[0]
    if isinstance(exc, ModuleNotFoundError) and missing:
        extra = _extra_for(missing)
        if extra is not None:
            return (
                f"this command needs the {missing!r} package: pip install 'pepperpy-event[{extra}]'"
            )
        if missing != "pepperpy":
            return f"this command needs the {missing!r} package, which is not installed"
    return (
        f"pepperpy-event could not import what it needs ({exc}); the installation may be "
        "broken (PEPPERPY_EVENT_DEBUG=1 shows the traceback)"
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``)."""
    debug = os.environ.get("PEPPERPY_EVENT_DEBUG", "") not in ("", "0")
    replace_missing_outputs()
    try:
        with logging_to_stderr(verbosity=2 if debug else 0):
            _run(list(sys.argv[1:] if argv is None else argv))
    except Terminated:
        _terminated()
    except KeyboardInterrupt:
        _interrupted()
    except OutputClosed:
        _pipe_closed()
    except NotPrinted as exc:
        discard_stdout()
        _fail(str(exc))
    except SystemExit:
        raise
    except (CommandError, EventError) as exc:  # MissingDependencyError names its extra
        if debug:
            raise
        _fail(str(exc) or type(exc).__name__)
    except ImportError as exc:
        if debug:
            raise
        _fail(_import_failure(exc))
    except (ValueError, OSError) as exc:
        if debug:
            raise
        _fail(str(exc) or type(exc).__name__)
    except Exception as exc:
        if debug:
            raise
        _fail(
            f"unexpected {type(exc).__name__}: {exc} (PEPPERPY_EVENT_DEBUG=1 shows the traceback)"
        )


def _run(args: list[str]) -> None:
    require("click", extra="cli", feature="the pepperpy-event command")
    import click

    from ._app import app

    try:
        # not standalone: click would answer Ctrl-C with "Aborted!" and status 1
        status = app.main(args=args, prog_name=PROGRAM, standalone_mode=False)
    except click.Abort as exc:  # click's answer to KeyboardInterrupt (SIGTERM's too)
        if isinstance(exc.__cause__, Terminated):
            raise Terminated from None
        raise KeyboardInterrupt from None
    except click.ClickException as exc:
        with contextlib.suppress(OSError, ValueError):  # stderr closed: the status says it
            exc.show()
        raise SystemExit(exc.exit_code) from None
    except SystemExit as exc:
        # click answers a closed pipe while it prints (--help, --version) with status 1
        if exc.code == 1 and _stdout_reader_gone():
            raise OutputClosed from None
        raise
    if isinstance(status, int) and status != 0:
        raise SystemExit(status)
