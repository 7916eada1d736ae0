"""``python -m pepperpy.event``: the same command as ``pepperpy-event``."""

from __future__ import annotations

from .cli import main

if __name__ == "__main__":
    main()
