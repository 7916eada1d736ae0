"""Constructor options that are counts or collaborators: one rule each, one message.

A count (a size, a bound, a batch) is an ``int``, never a ``bool`` (``True`` is an
``int`` to Python, and would pass as 1), nor a ``float`` (NaN compares false with
everything and slipped through ``< 1`` checks, after which a buffer never had room;
``1.5`` let two handlers in under a limit of "1.5"), nor a ``str`` (a value read from
the environment, which failed later with a bare ``'<' not supported``). A value of
another type is a :class:`TypeError`, as docs/errors.md promises for every wrong
argument type; an ``int`` out of range raises the caller's error for bad options.

A collaborator (an event store, an access control, an encryption) is an instance of its
class. A URL or a word in its place was taken, and failed at first use with an
``AttributeError`` from inside the library; it is refused where it is given, naming the
parameter and what it takes. Seconds have their own rule: :mod:`._seconds`.
"""

from __future__ import annotations

from typing import Literal, overload

from ._errors import ConfigurationError

__all__ = ["check_count", "check_instance"]


@overload
def check_count(
    value: object,
    name: str,
    *,
    least: int = 1,
    optional: Literal[False] = False,
    error: type[Exception] = ConfigurationError,
) -> int: ...


@overload
def check_count(
    value: object,
    name: str,
    *,
    least: int = 1,
    optional: bool,
    error: type[Exception] = ConfigurationError,
) -> int | None: ...


def check_count(
    value: object,
    name: str,
    *,
    least: int = 1,
    optional: bool = False,
    error: type[Exception] = ConfigurationError,
) -> int | None:
    """``value`` as a count >= ``least`` (None too if ``optional``).

    Anything else raises an error saying ``"<name> must be an int >= <least>[ or None],
    got <value>"``: a :class:`TypeError` for a value that is no ``int`` (a ``bool``
    included), ``error`` for an ``int`` below ``least``.
    """
    if value is None and optional:
        return None
    alternative = " or None" if optional else ""
    message = f"{name} must be an int >= {least}{alternative}, got {value!r}"
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(message)
    if value < least:
        raise error(message)
    return value


def check_instance(
    value: object, cls: type, name: str, *, optional: bool = False, from_url: bool = False
) -> None:
    """Refuse a ``value`` that is not a ``cls`` (nor None, if ``optional``) with a
    :class:`TypeError` naming ``name``. With ``from_url`` (``cls(url)`` opens one), a URL
    given in its place is told so."""
    if isinstance(value, cls) or (optional and value is None):
        return
    article = "an" if cls.__name__[:1] in ("A", "E", "I", "O", "U") else "a"
    expected = f"{article} {cls.__name__}" + (" or None" if optional else "")
    hint = ""
    if from_url and isinstance(value, str) and "://" in value:
        hint = f" (a URL: pass {cls.__name__}({value!r}))"
    raise TypeError(f"{name} must be {expected}, got {value!r}{hint}")
