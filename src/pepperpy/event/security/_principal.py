"""Who is acting: a context variable, so it follows the code into tasks."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

from .._errors import PatternError
from .._patterns import parse_topic

__all__ = ["PRINCIPAL", "acting_as", "current_principal"]

#: the acting principal (None: anonymous). The bus sets it directly around each handler
#: call, to the principal that subscribed the handler: cheaper than ``acting_as``.
PRINCIPAL: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "pepperpy_event_principal", default=None
)


def current_principal() -> str | None:
    """The principal set by the innermost :func:`acting_as`, or None."""
    return PRINCIPAL.get()


@contextlib.contextmanager
def acting_as(principal: str) -> Iterator[str]:
    """Run the block as ``principal``: stores and buses check their rules against it.

    The principal follows the code into tasks created inside the block (asyncio copies
    context variables into new tasks).

    A principal is a name like a topic: dot-separated tokens, without wildcards or
    whitespace (``svc.billing``). Anything else raises ``ValueError`` here, at once,
    rather than failing each later check: rules match principals as topics (a principal
    that is no str, ``TypeError``).
    """
    if not isinstance(principal, str) or not principal:
        message = f"principal must be a non-empty str, got {principal!r}"
        raise TypeError(message) if not isinstance(principal, str) else ValueError(message)
    try:
        parse_topic(principal)
    except PatternError as exc:
        raise ValueError(
            f"invalid principal {principal!r}: principal names are dot-separated tokens "
            f"without wildcards or whitespace ({exc})"
        ) from None
    token = PRINCIPAL.set(principal)
    try:
        yield principal
    finally:
        PRINCIPAL.reset(token)
