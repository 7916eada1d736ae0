"""Who is acting: a context variable, so it follows the code into tasks."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

__all__ = ["acting_as", "current_principal"]

_principal: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "pepperpy_event_principal", default=None
)


def current_principal() -> str | None:
    """The principal set by the innermost :func:`acting_as`, or None."""
    return _principal.get()


@contextlib.contextmanager
def acting_as(principal: str) -> Iterator[str]:
    """Run the block as ``principal``: stores and buses check their rules against it.

    The principal follows the code into tasks created inside the block (asyncio copies
    context variables into new tasks).
    """
    if not isinstance(principal, str) or not principal:
        raise ValueError(f"principal must be a non-empty str, got {principal!r}")
    token = _principal.set(principal)
    try:
        yield principal
    finally:
        _principal.reset(token)
