"""The command's own exceptions and what its errors may not print, importable without click."""

from __future__ import annotations

__all__ = ["CommandError", "OutputClosed", "redact_later", "scrub"]


class CommandError(Exception):
    """Bad input noticed by the command itself; printed as one line, exit status 1."""


class OutputClosed(BaseException):
    """stdout's reader went away (``| head``): the command stops quietly.

    A ``BaseException``, like ``KeyboardInterrupt``: it must not be taken for a handler
    failure by ``EventReplay`` (which isolates ``Exception``), so a replay stops at the
    event that could not be printed and its checkpoint stays before that event.
    """


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
