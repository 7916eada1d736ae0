"""The ``pepperpy-event`` command (also ``python -m pepperpy.event``).

``main()`` turns every expected failure (bad JSON, an unknown store URL, a version
conflict, a missing stream, an unreachable server) into one line on stderr and exit
status 1; usage mistakes get click's usage message and status 2. Set
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


def _fail(message: str, status: int = 1) -> None:
    text = " ".join(message.split()) or "unknown error"
    sys.stderr.write(f"{PROGRAM}: error: {text}\n")
    sys.stderr.flush()
    raise SystemExit(status)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``)."""
    debug = os.environ.get("PEPPERPY_EVENT_DEBUG", "") not in ("", "0")
    try:
        require("click", extra="cli", feature="the pepperpy-event command")
        from ._app import CommandError, app

        args = list(sys.argv[1:] if argv is None else argv)
        app.main(args=args, prog_name=PROGRAM, standalone_mode=True)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        raise SystemExit(130) from None
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
